//! Named volumes (a clone instance's repository lives in one), and copying
//! a tar into or out of a container through the engine's API: both work
//! the same with an engine on another machine.

use super::{api_err, call_timeout, is_404, read_timeout, Engine};
use crate::core::error::{Error, Result};
use bollard::models::VolumeCreateRequest;
use bollard::query_parameters as q;
use std::collections::HashMap;

/// What [`Engine::ensure_volume`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Volume {
    /// Made now (empty).
    Created,
    /// It was there already (an earlier start's).
    Existed,
}

/// A file in a container as the engine's stat of it tells (see
/// [`Engine::stat_path`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathStat {
    pub size: i64,
    pub mode: u32,
    pub mtime: String,
}

impl Engine {
    /// Makes the volume `name` with `labels`, unless it exists.
    pub async fn ensure_volume(
        &self,
        name: &str,
        labels: &HashMap<String, String>,
    ) -> Result<Volume> {
        let what = "inspect volume";
        match Self::bounded(what, read_timeout(), self.docker.inspect_volume(name)).await? {
            Ok(_) => return Ok(Volume::Existed),
            Err(e) if is_404(&e) => {}
            Err(e) => return Err(api_err("inspect volume", e)),
        }
        Self::timed(
            "create volume",
            self.docker.create_volume(VolumeCreateRequest {
                name: Some(name.to_owned()),
                labels: Some(labels.clone()),
                ..Default::default()
            }),
        )
        .await?;
        Ok(Volume::Created)
    }

    /// Whether the volume `name` exists.
    pub fn volume_exists(&self, name: &str) -> Result<bool> {
        self.block_on(async {
            let what = "inspect volume";
            match Self::bounded(what, read_timeout(), self.docker.inspect_volume(name)).await? {
                Ok(_) => Ok(true),
                Err(e) if is_404(&e) => Ok(false),
                Err(e) => Err(api_err("inspect volume", e)),
            }
        })
    }

    /// Removes the volume `name`; gone already is fine.
    pub fn remove_volume(&self, name: &str) -> Result<()> {
        self.block_on(self.remove_volume_async(name))
    }

    pub async fn remove_volume_async(&self, name: &str) -> Result<()> {
        let opts = q::RemoveVolumeOptionsBuilder::new().force(true).build();
        let removed = self.docker.remove_volume(name, Some(opts));
        match Self::bounded("remove volume", call_timeout(), removed).await? {
            Ok(()) => Ok(()),
            Err(e) if is_404(&e) => Ok(()),
            Err(e) => Err(api_err("remove volume", e)),
        }
    }

    /// The names and labels of every volume carrying all of `labels`
    /// (`key=value`).
    pub fn volumes(&self, labels: &[String]) -> Result<Vec<(String, HashMap<String, String>)>> {
        let filters = HashMap::from([("label".to_owned(), labels.to_vec())]);
        let list = self.block_on(Self::timed(
            "list volumes",
            self.docker.list_volumes(Some(
                q::ListVolumesOptionsBuilder::new()
                    .filters(&filters)
                    .build(),
            )),
        ))?;
        Ok(list
            .volumes
            .unwrap_or_default()
            .into_iter()
            .map(|v| (v.name, v.labels))
            .collect())
    }

    /// Unpacks the tar `archive` at `/` of the (created, not yet started,
    /// or running) container: into the volumes it mounts, too. The engine
    /// keeps the owners the archive names.
    pub async fn upload_tar(&self, container: &str, archive: Vec<u8>) -> Result<()> {
        self.upload_tar_into(container, "/", archive).await
    }

    /// Unpacks the tar `archive` in the directory `dir` of the container
    /// (a volume's mount point: that works with a read-only root too),
    /// keeping the owners it names.
    pub async fn upload_tar_into(
        &self,
        container: &str,
        dir: &str,
        archive: Vec<u8>,
    ) -> Result<()> {
        let opts = q::UploadToContainerOptionsBuilder::new().path(dir).build();
        // A repository is bigger than a settings file: no call timeout,
        // the connection's own applies.
        self.docker
            .upload_to_container(container, Some(opts), bollard::body_full(archive.into()))
            .await
            .map_err(|e| api_err(&format!("copy files into {dir} of the container"), e))
    }

    /// What the engine tells of the file at `path` in the container,
    /// without copying it (and without an event: a copy out logs one):
    /// enough to tell that it changed.
    pub fn stat_path(&self, container: &str, path: &str) -> Result<PathStat> {
        let opts = q::ContainerArchiveInfoOptionsBuilder::new()
            .path(path)
            .build();
        let st = self.block_on(Self::timed(
            "look at a file in the container",
            self.docker
                .get_container_archive_info(container, Some(opts)),
        ))?;
        Ok(PathStat {
            size: st.size,
            mode: st.file_mode,
            mtime: st.modification_time.unwrap_or_default(),
        })
    }

    /// The tar of `path` in the container (running or stopped), at most
    /// `cap` bytes: a bigger one is refused.
    pub fn download_tar(&self, container: &str, path: &str, cap: u64) -> Result<Vec<u8>> {
        use futures_util::StreamExt;
        let what = "copy out of the container";
        // A repository is bigger than a status file: bounded as a change.
        self.block_on(Self::bounded(what, call_timeout(), async {
            let opts = q::DownloadFromContainerOptionsBuilder::new()
                .path(path)
                .build();
            let mut stream = self.docker.download_from_container(container, Some(opts));
            let mut out = Vec::new();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| api_err(what, e))?;
                if (out.len() + chunk.len()) as u64 > cap {
                    return Err(Error::Invalid(format!(
                        "{path} in the container is over {cap} bytes; not copied"
                    )));
                }
                out.extend_from_slice(&chunk);
            }
            Ok(out)
        }))?
    }
}
