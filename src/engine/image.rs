//! Images: whether one exists, building one from a tar context, and
//! removing the ones a label marks.

use super::{api_err, is_404, read_timeout, timeout_error, Engine};
use crate::core::error::{Error, Result};
use bollard::query_parameters as q;
use futures_util::StreamExt;
use std::collections::HashMap;

/// How to build an image from a tar context.
#[derive(Debug, Clone, Default)]
pub struct Build {
    pub tag: String,
    pub labels: HashMap<String, String>,
    pub build_args: HashMap<String, String>,
    pub no_cache: bool,
    /// The network its RUN steps use (`None`: the engine's default).
    pub network: Option<String>,
}

impl Engine {
    pub fn image_exists(&self, image: &str) -> Result<bool> {
        let after = read_timeout();
        match self
            .block_on(async { tokio::time::timeout(after, self.docker.inspect_image(image)).await })
        {
            Ok(Ok(_)) => Ok(true),
            Ok(Err(e)) if is_404(&e) => Ok(false),
            Ok(Err(e)) => Err(api_err("inspect image", e)),
            Err(_) => Err(timeout_error("inspect image", after)),
        }
    }

    /// Builds `context` (a tar with a Dockerfile); each line of the build's
    /// output goes to `progress` as it comes. A failed step leaves no
    /// container behind.
    pub fn build_image(
        &self,
        context: Vec<u8>,
        build: &Build,
        progress: &mut dyn FnMut(&str),
    ) -> Result<()> {
        let mut opts = q::BuildImageOptionsBuilder::new()
            .t(&build.tag)
            .rm(true)
            .forcerm(true)
            .nocache(build.no_cache)
            .labels(&build.labels)
            .buildargs(&build.build_args);
        if let Some(n) = &build.network {
            opts = opts.networkmode(n);
        }
        let opts = opts.build();
        self.block_on(async {
            let body = bollard::body_full(context.into());
            let mut stream = self.docker.build_image(opts, None, Some(body));
            while let Some(item) = stream.next().await {
                let info = item.map_err(|e| Error::Other(format!("{e}")))?;
                if let Some(s) = info.stream {
                    progress(&s);
                }
                if let Some(e) = info.error_detail.and_then(|d| d.message) {
                    return Err(Error::Other(e));
                }
            }
            Ok(())
        })
    }

    /// Removes the images of repository `repo` labelled `label` (`k=v`)
    /// except `keep`; one in use stays (no force).
    pub fn prune_images(&self, repo: &str, label: &str, keep: &str) {
        let filters = HashMap::from([
            ("reference".to_owned(), vec![repo.to_owned()]),
            ("label".to_owned(), vec![label.to_owned()]),
        ]);
        let (key, value) = label.split_once('=').unwrap_or((label, ""));
        let opts = q::ListImagesOptionsBuilder::new().filters(&filters).build();
        self.block_on(async {
            let Ok(images) = self.docker.list_images(Some(opts)).await else {
                return;
            };
            for img in images {
                // The engine's filter, checked again: an image untagged
                // here is gone for whoever else used it.
                let ours = img.labels.get(key).map(String::as_str) == Some(value);
                if !ours || img.repo_tags.iter().any(|t| t == keep) {
                    continue;
                }
                for t in &img.repo_tags {
                    let _ = self
                        .docker
                        .remove_image(t, None::<q::RemoveImageOptions>, None)
                        .await;
                }
            }
        });
    }
}
