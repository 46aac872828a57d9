//! A small file system of its own for a test (a tmpfs, which needs root), so that a
//! coordinator's data volume can be filled up without touching the machine's disks; and a
//! file that fills what is left of it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

/// A tmpfs mounted on a fresh directory; unmounted when dropped.
pub struct SmallVolume {
    dir: TempDir,
}

impl SmallVolume {
    /// Mounts a tmpfs of `mib` MiB. Panics, saying why, where mounting is not allowed: the
    /// test needs root, as CI has.
    pub fn mount(mib: u64) -> Self {
        let dir = TempDir::new().expect("temp dir");
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("mount runs");
        assert!(
            output.status.success(),
            "this test needs to mount a tmpfs, which needs root (CI runs as root): {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
        Self { dir }
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file until the volume is full; returns its path.
    pub fn fill(&self) -> PathBuf {
        let path = self.path().join("filler");
        let mut file = std::fs::File::create(&path).expect("create the filler");
        // Smaller and smaller writes, down to the last byte.
        for size in [64 * 1024, 4096, 64, 1] {
            let chunk = vec![0xA5u8; size];
            while file.write_all(&chunk).is_ok() {}
        }
        path
    }
}

impl Drop for SmallVolume {
    fn drop(&mut self) {
        // Lazily, so a process still holding a file does not keep it mounted.
        let unmounted = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
        if !unmounted.is_ok_and(|status| status.success()) {
            eprintln!("could not unmount {}", self.dir.path().display());
        }
    }
}
