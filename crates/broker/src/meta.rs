//! `meta.properties` in every log dir: the broker and the cluster the logs
//! there belong to, in Kafka's format. A broker refuses to start on another
//! broker's dirs, and refuses metadata (and registration) from a
//! coordinator of another cluster, so a coordinator started on an empty
//! `dataDir` cannot make it drop its logs.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

const FILE: &str = "meta.properties";

#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("cannot {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a valid meta.properties: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error(
        "the log dir {dir} belongs to broker {stored} (its meta.properties), not to broker.id={configured}"
    )]
    OtherBroker {
        dir: PathBuf,
        stored: i32,
        configured: i32,
    },
    #[error(
        "the log dirs belong to different clusters: {first} in {first_dir}, {second} in {second_dir}"
    )]
    MixedClusters {
        first: String,
        first_dir: PathBuf,
        second: String,
        second_dir: PathBuf,
    },
}

/// Reads the `meta.properties` of every log dir that has one. All must name
/// `broker_id` and the same cluster; returns that cluster id, if any dir
/// has recorded one yet.
pub fn load(log_dirs: &[PathBuf], broker_id: i32) -> Result<Option<String>, MetaError> {
    let mut found: Option<(String, PathBuf)> = None;
    for dir in log_dirs {
        let path = dir.join(FILE);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => {
                return Err(MetaError::Io {
                    op: "read",
                    path,
                    source,
                });
            }
        };
        let props = config::Properties::parse(&text, path.display().to_string()).map_err(|e| {
            MetaError::Invalid {
                path: path.clone(),
                reason: e.to_string(),
            }
        })?;
        let stored: i32 = props
            .get("broker.id")
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| MetaError::Invalid {
                path: path.clone(),
                reason: "no valid broker.id".into(),
            })?;
        if stored != broker_id {
            return Err(MetaError::OtherBroker {
                dir: dir.clone(),
                stored,
                configured: broker_id,
            });
        }
        if let Some(cluster_id) = props
            .get("cluster.id")
            .map(str::trim)
            .filter(|c| !c.is_empty())
        {
            match &found {
                Some((first, first_dir)) if first != cluster_id => {
                    return Err(MetaError::MixedClusters {
                        first: first.clone(),
                        first_dir: first_dir.clone(),
                        second: cluster_id.to_owned(),
                        second_dir: dir.clone(),
                    });
                }
                Some(_) => {}
                None => found = Some((cluster_id.to_owned(), dir.clone())),
            }
        }
    }
    Ok(found.map(|(cluster_id, _)| cluster_id))
}

/// Records `cluster_id` and `broker_id` in every log dir (temp file, fsync,
/// rename), so later starts know which cluster the logs belong to.
pub fn store(log_dirs: &[PathBuf], broker_id: i32, cluster_id: &str) -> Result<(), MetaError> {
    for dir in log_dirs {
        let path = dir.join(FILE);
        let temp = dir.join(format!("{FILE}.tmp"));
        let text = format!(
            "#\n# Written by kafka-server-start\nversion=0\nbroker.id={broker_id}\ncluster.id={cluster_id}\n"
        );
        let io = |op: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| MetaError::Io { op, path, source }
        };
        let mut file = fs::File::create(&temp).map_err(io("create", &temp))?;
        file.write_all(text.as_bytes())
            .map_err(io("write", &temp))?;
        file.sync_all().map_err(io("fsync", &temp))?;
        fs::rename(&temp, &path).map_err(io("rename", &path))?;
        if let Ok(dir_handle) = fs::File::open(dir) {
            let _ = dir_handle.sync_all();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_ids_load_back_and_a_stranger_is_refused() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let dirs = vec![a.path().to_path_buf(), b.path().to_path_buf()];
        assert_eq!(load(&dirs, 3).unwrap(), None, "nothing recorded yet");
        store(&dirs, 3, "Oydbx7JRTsetqx6RzYvEhg").unwrap();
        assert_eq!(
            load(&dirs, 3).unwrap().as_deref(),
            Some("Oydbx7JRTsetqx6RzYvEhg")
        );
        assert!(matches!(
            load(&dirs, 4),
            Err(MetaError::OtherBroker { stored: 3, .. })
        ));

        store(&dirs[1..], 3, "another-cluster").unwrap();
        assert!(matches!(
            load(&dirs, 3),
            Err(MetaError::MixedClusters { .. })
        ));
        fs::write(b.path().join(FILE), "broker.id=x\n").unwrap();
        assert!(matches!(load(&dirs, 3), Err(MetaError::Invalid { .. })));
    }
}
