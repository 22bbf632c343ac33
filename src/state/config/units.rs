//! The seed's units: memory quantities (`1Gi`, `800Mi`, `512M`), CPU
//! (`500m`, `0.5`, `2`) and durations (`30s`, `5m`, `7d`).

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A memory quantity in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Bytes(pub u64);

/// CPU in millicores (`500m` = half a core).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cpu(pub u64);

/// A duration written with a unit suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dur(pub Duration);

fn split_number(s: &str) -> Option<(f64, &str)> {
    let s = s.trim();
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(end);
    if num.is_empty() || num.matches('.').count() > 1 {
        return None;
    }
    let n: f64 = num.parse().ok()?;
    n.is_finite().then_some((n, unit.trim()))
}

impl FromStr for Bytes {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let err = || format!("invalid memory quantity {s:?} (examples: 1Gi, 800Mi, 512M, 64k)");
        let (n, unit) = split_number(s).ok_or_else(err)?;
        let mult: f64 = match unit {
            "" | "b" | "B" => 1.0,
            "k" | "K" | "kB" | "KB" => 1e3,
            "M" | "MB" => 1e6,
            "G" | "GB" => 1e9,
            "T" | "TB" => 1e12,
            "Ki" | "KiB" => 1024.0,
            "Mi" | "MiB" | "m" => 1024.0 * 1024.0,
            "Gi" | "GiB" | "g" => 1024.0 * 1024.0 * 1024.0,
            "Ti" | "TiB" => 1024.0f64.powi(4),
            _ => return Err(err()),
        };
        let v = n * mult;
        if v < 1.0 || v > u64::MAX as f64 / 2.0 {
            return Err(format!("memory quantity {s:?} is out of range"));
        }
        Ok(Bytes(v.round() as u64))
    }
}

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(&str, u64); 4] = [
            ("Ti", 1 << 40),
            ("Gi", 1 << 30),
            ("Mi", 1 << 20),
            ("Ki", 1 << 10),
        ];
        // Exact values in the unit the user most likely wrote: the shorter
        // of the binary (2Gi) and the decimal (2G) forms.
        const DECIMAL: [(&str, u64); 4] = [
            ("T", 1_000_000_000_000),
            ("G", 1_000_000_000),
            ("M", 1_000_000),
            ("k", 1_000),
        ];
        let exact = |units: &[(&'static str, u64)]| {
            units
                .iter()
                .find(|(_, m)| self.0 >= *m && self.0.is_multiple_of(*m))
                .map(|(u, m)| (self.0 / m, *u))
        };
        match (exact(&UNITS), exact(&DECIMAL)) {
            (Some((b, bu)), Some((d, du))) => {
                return if d < b {
                    write!(f, "{d}{du}")
                } else {
                    write!(f, "{b}{bu}")
                };
            }
            (Some((n, u)), None) | (None, Some((n, u))) => return write!(f, "{n}{u}"),
            (None, None) => {}
        }
        for (u, m) in UNITS {
            if self.0 >= m {
                return write!(f, "{:.1}{u}", self.0 as f64 / m as f64);
            }
        }
        write!(f, "{}", self.0)
    }
}

impl FromStr for Cpu {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let err = || format!("invalid CPU quantity {s:?} (examples: 500m, 0.5, 2)");
        let (n, unit) = split_number(s).ok_or_else(err)?;
        let millis = match unit {
            "m" => n,
            "" => n * 1000.0,
            _ => return Err(err()),
        };
        if !(1.0..=1_024_000.0).contains(&millis) {
            return Err(format!("CPU quantity {s:?} is out of range"));
        }
        Ok(Cpu(millis.round() as u64))
    }
}

impl Cpu {
    pub fn cores(self) -> f64 {
        self.0 as f64 / 1000.0
    }
    /// Docker's `NanoCpus`.
    pub fn nano_cpus(self) -> i64 {
        (self.0 as i64) * 1_000_000
    }
}

impl fmt::Display for Cpu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}m", self.0)
    }
}

impl FromStr for Dur {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let err = || format!("invalid duration {s:?} (examples: 500ms, 30s, 5m, 2h, 7d)");
        let (n, unit) = split_number(s).ok_or_else(err)?;
        let secs = match unit {
            "ms" => n / 1000.0,
            "s" | "" => n,
            "m" | "min" => n * 60.0,
            "h" => n * 3600.0,
            "d" => n * 86400.0,
            "w" => n * 7.0 * 86400.0,
            _ => return Err(err()),
        };
        if secs > 10.0 * 365.0 * 86400.0 {
            return Err(format!("duration {s:?} is out of range"));
        }
        Ok(Dur(Duration::from_secs_f64(secs)))
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        let s = self.0.as_secs();
        if !ms.is_multiple_of(1000) {
            write!(f, "{ms}ms")
        } else if s != 0 && s.is_multiple_of(86400) {
            write!(f, "{}d", s / 86400)
        } else if s != 0 && s.is_multiple_of(3600) {
            write!(f, "{}h", s / 3600)
        } else if s != 0 && s.is_multiple_of(60) {
            write!(f, "{}m", s / 60)
        } else {
            write!(f, "{s}s")
        }
    }
}

/// Accepts a string with a unit or a bare number (taken as the base unit).
macro_rules! string_or_number_serde {
    ($t:ty) => {
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                #[derive(Deserialize)]
                #[serde(untagged)]
                enum Raw {
                    S(String),
                    I(i64),
                    F(f64),
                }
                let text = match Raw::deserialize(d)? {
                    Raw::S(s) => s,
                    Raw::I(i) => i.to_string(),
                    Raw::F(f) => f.to_string(),
                };
                text.parse().map_err(serde::de::Error::custom)
            }
        }
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
    };
}
string_or_number_serde!(Bytes);
string_or_number_serde!(Cpu);
string_or_number_serde!(Dur);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_quantities() {
        assert_eq!("1Gi".parse::<Bytes>().unwrap().0, 1 << 30);
        assert_eq!("800Mi".parse::<Bytes>().unwrap().0, 800 << 20);
        assert_eq!("512M".parse::<Bytes>().unwrap().0, 512_000_000);
        assert_eq!("64k".parse::<Bytes>().unwrap().0, 64_000);
        assert_eq!("1.5Gi".parse::<Bytes>().unwrap().0, 3 << 29);
        assert_eq!("4096".parse::<Bytes>().unwrap().0, 4096);
        for bad in ["", "Gi", "1Xi", "-1Gi", "1..2Mi", "0", "1e9"] {
            assert!(bad.parse::<Bytes>().is_err(), "{bad:?}");
        }
        assert_eq!(Bytes(1 << 30).to_string(), "1Gi");
        assert_eq!(Bytes(950 << 20).to_string(), "950Mi");
        assert_eq!(Bytes(2_000_000_000).to_string(), "2G", "the user wrote 2GB");
        assert_eq!(Bytes(512_000_000).to_string(), "512M");
        assert_eq!(Bytes(1024).to_string(), "1Ki");
    }

    #[test]
    fn cpu_quantities() {
        assert_eq!("500m".parse::<Cpu>().unwrap().0, 500);
        assert_eq!("0.5".parse::<Cpu>().unwrap().0, 500);
        assert_eq!("2".parse::<Cpu>().unwrap().0, 2000);
        assert_eq!("500m".parse::<Cpu>().unwrap().nano_cpus(), 500_000_000);
        for bad in ["", "m", "500x", "-1", "0", "0m"] {
            assert!(bad.parse::<Cpu>().is_err(), "{bad:?}");
        }
        assert_eq!(Cpu(480).to_string(), "480m");
    }

    #[test]
    fn durations() {
        assert_eq!("30s".parse::<Dur>().unwrap().0, Duration::from_secs(30));
        assert_eq!("5m".parse::<Dur>().unwrap().0, Duration::from_secs(300));
        assert_eq!(
            "7d".parse::<Dur>().unwrap().0,
            Duration::from_secs(7 * 86400)
        );
        assert_eq!(
            "250ms".parse::<Dur>().unwrap().0,
            Duration::from_millis(250)
        );
        assert_eq!("10".parse::<Dur>().unwrap().0, Duration::from_secs(10));
        for bad in ["", "s", "5x", "-5s", "100000d"] {
            assert!(bad.parse::<Dur>().is_err(), "{bad:?}");
        }
        assert_eq!(Dur(Duration::from_secs(604800)).to_string(), "7d");
        assert_eq!(Dur(Duration::from_secs(90)).to_string(), "90s");
    }
}
