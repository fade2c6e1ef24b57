//! Reading files the way Kubernetes mounts them.
//!
//! The kubelet mounts a ConfigMap or Secret as a directory whose entries are
//! symlinks into `..data`, itself a symlink to a timestamped directory that
//! is swapped atomically on update. A link that points nowhere (a broken
//! mount, a key that was removed) or loops is an error naming it, never "no
//! file": falling back to defaults silently is how a service starts with the
//! wrong settings. A FIFO or device is refused before it is opened (opening
//! one can block forever); every read is bounded.

use std::io::Read;
use std::path::Path;

/// Whether anything is at `path`, a dangling or looping symlink included.
pub(crate) fn is_present(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok()
}

/// Why `path` cannot be used, when something is there that is not a
/// readable directory; `None` for a directory and for nothing at all.
pub(crate) fn broken_dir(path: &Path) -> Option<String> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => None,
        Ok(_) => Some("is not a directory".into()),
        Err(e) => is_present(path).then(|| unresolvable(path, &e)),
    }
}

/// Reads a whole regular file of at most `limit` bytes, following symlinks.
/// The error says what is wrong, in words that follow the file's name.
pub(crate) fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, String> {
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) => return Err(unresolvable(path, &e)),
    };
    if meta.is_dir() {
        return Err("is a directory, expected a file".into());
    }
    if !meta.is_file() {
        return Err("is not a regular file (a FIFO, socket or device?)".into());
    }
    if meta.len() > limit {
        return Err(too_large(meta.len(), limit));
    }
    let file = std::fs::File::open(path).map_err(|e| format!("cannot be read: {e}"))?;
    // The file may grow between the check and the read: read one byte past the limit.
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot be read: {e}"))?;
    if bytes.len() as u64 > limit {
        return Err(too_large(bytes.len() as u64, limit));
    }
    Ok(bytes)
}

fn too_large(size: u64, limit: u64) -> String {
    format!("is {size} bytes, over the limit of {limit} bytes")
}

/// Words for a path whose `metadata` failed with `e`.
fn unresolvable(path: &Path, e: &std::io::Error) -> String {
    let is_link = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    if !is_link {
        return match e.kind() {
            std::io::ErrorKind::NotFound => "does not exist".into(),
            _ => format!("cannot be read: {e}"),
        };
    }
    let target = std::fs::read_link(path)
        .map(|t| t.display().to_string())
        .unwrap_or_else(|_| "?".into());
    match e.kind() {
        std::io::ErrorKind::NotFound => {
            format!("is a symlink to {target}, which does not exist (a broken mount?)")
        }
        // ELOOP has no stable ErrorKind yet; the OS text ("Too many levels of
        // symbolic links") says it.
        _ => format!("is a symlink to {target} that cannot be followed: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_that_lead_nowhere_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("real"), "x").unwrap();
        std::os::unix::fs::symlink("real", d.join("good")).unwrap();
        std::os::unix::fs::symlink("gone", d.join("dangling")).unwrap();
        std::os::unix::fs::symlink("loop-b", d.join("loop-a")).unwrap();
        std::os::unix::fs::symlink("loop-a", d.join("loop-b")).unwrap();
        std::fs::create_dir(d.join("sub")).unwrap();

        assert_eq!(read_bounded(&d.join("good"), 10).unwrap(), b"x");
        assert!(is_present(&d.join("dangling")));
        assert!(!is_present(&d.join("absent")));
        let e = read_bounded(&d.join("dangling"), 10).unwrap_err();
        assert!(
            e.contains("symlink to gone") && e.contains("does not exist"),
            "{e}"
        );
        let e = read_bounded(&d.join("loop-a"), 10).unwrap_err();
        assert!(e.contains("cannot be followed"), "{e}");
        let e = read_bounded(&d.join("sub"), 10).unwrap_err();
        assert!(e.contains("directory"), "{e}");
        let e = read_bounded(&d.join("absent"), 10).unwrap_err();
        assert_eq!(e, "does not exist");
        let e = read_bounded(&d.join("real"), 0).unwrap_err();
        assert!(e.contains("over the limit of 0 bytes"), "{e}");

        assert_eq!(broken_dir(&d.join("sub")), None);
        assert_eq!(broken_dir(&d.join("absent")), None);
        assert!(broken_dir(&d.join("dangling")).is_some());
        assert_eq!(
            broken_dir(&d.join("real")).as_deref(),
            Some("is not a directory")
        );
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.unwrap().success(), "mkfifo (coreutils) makes the FIFO");
        let e = read_bounded(&fifo, 10).unwrap_err();
        assert!(e.contains("not a regular file"), "{e}");
    }
}
