//! Archives a box's engine sends of a path in the box (`GET
//! /containers/{id}/archive`): the engine names what is there, and the box
//! put it there. Only a small regular file is taken; a link, a directory,
//! a device, more than one entry or more than asked for says nothing.

use std::io::Read;

/// The contents of the one regular file the tar `archive` holds, at most
/// `cap` bytes; `None` for anything else.
pub fn one_file(archive: &[u8], cap: u64) -> Option<Vec<u8>> {
    let mut ar = tar::Archive::new(archive);
    let mut entries = ar.entries().ok()?;
    let mut data = Vec::new();
    {
        let entry = entries.next()?.ok()?;
        let kind = entry.header().entry_type();
        if !matches!(kind, tar::EntryType::Regular | tar::EntryType::Continuous)
            || entry.header().size().ok()? > cap
        {
            return None;
        }
        entry.take(cap + 1).read_to_end(&mut data).ok()?;
    }
    if data.len() as u64 > cap || entries.next().is_some() {
        return None;
    }
    Some(data)
}

#[cfg(test)]
mod tests {
    use super::one_file;

    fn tar_of(entries: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, kind, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_mode(0o644);
            h.set_size(data.len() as u64);
            if *kind == tar::EntryType::Symlink {
                h.set_size(0);
                h.set_link_name("/etc/passwd").unwrap();
                b.append_data(&mut h, name, std::io::empty()).unwrap();
            } else {
                b.append_data(&mut h, name, *data).unwrap();
            }
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn only_one_small_regular_file_says_something() {
        use tar::EntryType::*;
        let ok = tar_of(&[("status", Regular, b"waiting\n")]);
        assert_eq!(one_file(&ok, 64).as_deref(), Some(&b"waiting\n"[..]));
        let big = tar_of(&[("status", Regular, &[b'w'; 65])]);
        assert_eq!(one_file(&big, 64), None, "over the cap");
        let link = tar_of(&[("status", Symlink, b"")]);
        assert_eq!(one_file(&link, 64), None, "a link");
        let dir = tar_of(&[("status", Directory, b"")]);
        assert_eq!(one_file(&dir, 64), None, "a directory");
        let fifo = tar_of(&[("status", Fifo, b"")]);
        assert_eq!(one_file(&fifo, 64), None, "a FIFO");
        let two = tar_of(&[("status", Regular, b"idle\n"), ("more", Regular, b"x")]);
        assert_eq!(one_file(&two, 64), None, "two entries");
        assert_eq!(one_file(b"not a tar at all", 64), None);
        assert_eq!(one_file(&[], 64), None);
    }
}
