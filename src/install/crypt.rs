//! Encrypted (`crypt-`) partitions: the key, which containers the preflight
//! tries it on, which the steps open, and the containers a run holds open.
//!
//! A partition named `crypt-X` has X's role and holds a LUKS2 container;
//! the filesystem is made, unpacked and checked on `/dev/mapper/sysinstall-X`
//! (docs/spec/flash-layout.md §9; REC §5.6: every unit, every `crypt-`
//! partition, LUKS2). The rules:
//!
//! * The key is given (`--luks-key-file`, or `--luks-key-command` whose
//!   standard output is the key, run once in the preflight); a layout with
//!   `crypt-` partitions and no key is refused before anything is written.
//! * A container this run re-creates gets a new one (`luksFormat`), except
//!   when resuming: a container the key opens is reused, so that what the
//!   earlier run finished inside it is found and kept.
//! * Every other existing container of the layout (the running slot in an
//!   update, a DATA kept in place) must open with the key: the preflight
//!   tries it, and a key that does not open one is refused (a board whose
//!   slots had two keys could not unlock both).

use super::decide::Decision;
use super::report::{refuse, FailCode};
use super::{Fs, FsRole, LuksKey};
use crate::probe::Content;
use crate::repartition::Plan;
use crate::sys::luks;
use anyhow::Context as _;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

/// The key as a file for `cryptsetup --key-file`: the one given, or the key
/// command's output in a 0600 file of the run directory (tmpfs), removed
/// when this is dropped.
#[derive(Debug)]
pub struct KeyFile {
    path: PathBuf,
    ours: bool,
}

impl KeyFile {
    /// Where cryptsetup reads it.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for KeyFile {
    fn drop(&mut self) {
        if self.ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The `crypt-` filesystems of the layout.
pub fn encrypted(fs: &[Fs]) -> impl Iterator<Item = &Fs> {
    fs.iter().filter(|f| f.crypt)
}

/// The existing containers the key must open: those of the layout that
/// this run does not re-create (it reads or keeps what is in them).
pub fn to_test<'a>(fs: &'a [Fs], plan: &Plan, d: &Decision) -> Vec<&'a Fs> {
    encrypted(fs)
        .filter(|f| !d.create.contains(&f.name))
        .filter(|f| {
            plan.partitions
                .iter()
                .any(|p| p.name == f.name && p.content == Some(Content::Luks))
        })
        .collect()
}

/// The containers the steps open: those of the filesystems this run
/// creates, and DATA kept in place when a data tarball goes into it.
pub fn to_open<'a>(fs: &'a [Fs], d: &Decision, data_tarball: bool) -> Vec<&'a Fs> {
    encrypted(fs)
        .filter(|f| d.create.contains(&f.name) || (f.role == FsRole::Data && data_tarball))
        .collect()
}

/// The device-mapper name of `f`'s container while the install holds it.
pub fn mapper_name(f: &Fs) -> String {
    format!("{}{}", luks::MAPPER_PREFIX, f.label())
}

/// The preflight's part: with `crypt-` partitions in the layout, a key, the
/// tools, and the key tried on the containers [`to_test`] lists.
pub fn check(
    key: &LuksKey,
    sys_root: &Path,
    rundir: &Path,
    fs: &[Fs],
    tested: &[(&Fs, PathBuf)],
) -> anyhow::Result<Option<KeyFile>> {
    let names: Vec<&str> = encrypted(fs).map(|f| f.name.as_str()).collect();
    if names.is_empty() {
        return Ok(None);
    }
    if matches!(key, LuksKey::None) {
        refuse!(
            FailCode::KeyMissing,
            "the layout has encrypted partitions ({}) and no key was given: use --luks-key-file FILE or --luks-key-command CMD",
            names.join(", ")
        );
    }
    if !super::preflight::tool_exists("cryptsetup") {
        refuse!(
            FailCode::ToolMissing,
            "cryptsetup is not installed (needed for {})",
            names.join(", ")
        );
    }
    if let Err(e) = luks::version() {
        refuse!(FailCode::ToolMissing, "cryptsetup does not run: {e:#}");
    }
    if let Some(why) = luks::dm_crypt_missing(sys_root) {
        refuse!(FailCode::ToolMissing, "{why}");
    }
    let file = key_file(key, rundir)?;
    for (f, dev) in tested {
        if !luks::key_opens(dev, file.path())? {
            refuse!(
                FailCode::KeyRejected,
                "the key does not open the LUKS container on {} ({}), which this install keeps",
                f.name,
                dev.display()
            );
        }
    }
    Ok(Some(file))
}

fn key_file(key: &LuksKey, rundir: &Path) -> anyhow::Result<KeyFile> {
    match key {
        LuksKey::None => refuse!(FailCode::KeyMissing, "no key for the encrypted partitions"),
        LuksKey::File(p) => {
            let len = std::fs::metadata(p)
                .with_context(|| format!("reading the key file {}", p.display()))?
                .len();
            if len == 0 {
                refuse!(
                    FailCode::KeyMissing,
                    "the key file {} is empty",
                    p.display()
                );
            }
            Ok(KeyFile {
                path: p.clone(),
                ours: false,
            })
        }
        LuksKey::Command(c) => {
            let bytes = luks::run_key_command(c).map_err(|e| {
                anyhow::Error::new(super::report::Coded {
                    code: FailCode::KeyMissing,
                    message: format!("running the key command: {e}"),
                })
            })?;
            if bytes.is_empty() {
                refuse!(
                    FailCode::KeyMissing,
                    "the key command printed nothing: no key for the encrypted partitions"
                );
            }
            let path = rundir.join("luks.key");
            let _ = std::fs::remove_file(&path);
            let file = KeyFile { path, ours: true };
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(file.path())
                .and_then(|mut f| f.write_all(&bytes))
                .with_context(|| format!("writing {}", file.path().display()))?;
            Ok(file)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bup::board::Slot;
    use crate::install::journal::InstallMode;

    fn fs() -> Vec<Fs> {
        [
            ("crypt-APP", FsRole::Slot(Slot::A), true),
            ("crypt-APP_b", FsRole::Slot(Slot::B), true),
            ("crypt-DATA", FsRole::Data, true),
            ("LOGS", FsRole::Scratch, false),
        ]
        .iter()
        .enumerate()
        .map(|(i, (n, r, c))| Fs {
            name: (*n).into(),
            number: i as u32 + 1,
            size: 1 << 30,
            role: *r,
            crypt: *c,
        })
        .collect()
    }

    fn decision(create: &[&str]) -> Decision {
        Decision {
            mode: InstallMode::Update,
            why: String::new(),
            target: Slot::B,
            journal: None,
            data: None,
            create: create.iter().map(|s| (*s).to_owned()).collect(),
            erased: Vec::new(),
        }
    }

    #[test]
    fn an_update_opens_only_its_slot_and_data_with_a_tarball() {
        let fs = fs();
        let d = decision(&["crypt-APP_b"]);
        let names = |v: Vec<&Fs>| v.iter().map(|f| f.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(to_open(&fs, &d, false)), ["crypt-APP_b"]);
        assert_eq!(names(to_open(&fs, &d, true)), ["crypt-APP_b", "crypt-DATA"]);
    }

    #[test]
    fn mapper_names_carry_the_prefix_and_the_role_name() {
        let fs = fs();
        assert_eq!(mapper_name(&fs[0]), "sysinstall-APP");
        assert_eq!(fs[2].shown(), "DATA (LUKS2 on crypt-DATA)");
        assert_eq!(fs[3].shown(), "LOGS");
    }

    #[test]
    fn no_key_is_refused_with_its_code() {
        let dir = tempfile::tempdir().unwrap();
        let err = check(&LuksKey::None, dir.path(), dir.path(), &fs(), &[]).unwrap_err();
        assert_eq!(
            super::super::report::failure_code(&err),
            FailCode::KeyMissing
        );
        assert!(err
            .to_string()
            .contains("crypt-APP, crypt-APP_b, crypt-DATA"));
        // Nothing encrypted: nothing asked.
        let plain: Vec<Fs> = fs().into_iter().filter(|f| !f.crypt).collect();
        assert!(check(&LuksKey::None, dir.path(), dir.path(), &plain, &[])
            .unwrap()
            .is_none());
    }

    #[test]
    fn an_empty_key_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        std::fs::write(&p, b"").unwrap();
        let err = key_file(&LuksKey::File(p), dir.path()).unwrap_err();
        assert_eq!(
            super::super::report::failure_code(&err),
            FailCode::KeyMissing
        );
    }

    #[test]
    fn the_key_command_output_is_a_private_file_removed_afterwards() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let k = key_file(&LuksKey::Command("printf 's3cr3t\\n'".into()), dir.path()).unwrap();
        assert_eq!(std::fs::read(k.path()).unwrap(), b"s3cr3t\n");
        let mode = std::fs::metadata(k.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let p = k.path().to_owned();
        drop(k);
        assert!(!p.exists());
        let err = key_file(
            &LuksKey::Command("echo oops >&2; exit 3".into()),
            dir.path(),
        )
        .unwrap_err();
        assert_eq!(
            super::super::report::failure_code(&err),
            FailCode::KeyMissing
        );
        assert!(err.to_string().contains("oops"), "{err}");
    }
}
