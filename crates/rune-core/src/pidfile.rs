//! Pid files written atomically, as runc does: a reader (containerd polls them) must
//! never see an empty or partial number.

use std::fs;
use std::io::Write;
use std::path::Path;

use crate::error::{Result, RuneError};

/// Writes `pid` to `path` through a temporary file in the same directory and a rename.
pub fn write(path: &Path, pid: i32) -> Result<()> {
    let ctx = || format!("pid file {}", path.display());
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| RuneError::io(ctx(), std::io::ErrorKind::InvalidInput.into()))?;
    let tmp = dir.join(format!(
        ".{}.{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(pid.to_string().as_bytes())?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(err) = result {
        let _ = fs::remove_file(&tmp);
        return Err(RuneError::io(ctx(), err));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn writes_number_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("init.pid");
        super::write(&path, 4242).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "4242");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        assert!(super::write(&dir.path().join("missing/x.pid"), 1).is_err());
    }
}
