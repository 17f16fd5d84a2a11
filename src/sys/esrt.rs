//! Reading the ESRT Linux exports (`/sys/firmware/efi/esrt/entries/entry*/`)
//! and, with [`crate::sys::efivarfs`], the whole firmware state. The
//! directory is a parameter so tests use a fake tree; parsing is
//! [`crate::uefi::esrt`]'s.

use crate::sys::efivarfs::Efivarfs;
use crate::uefi::esrt::{EsrtEntry, FirmwareState, ENTRY_FILES};
use anyhow::Context;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

/// Where Linux exports the ESRT.
pub const ESRT: &str = "/sys/firmware/efi/esrt";
/// Bytes read of one ESRT file (each holds one number or a GUID).
const FILE_MAX: u64 = 256;
/// Entries read at most (firmware lists a handful).
const MAX_ENTRIES: usize = 64;

fn entry_number(name: &str) -> Option<u32> {
    name.strip_prefix("entry")?.parse().ok()
}

/// The ESRT entries under `dir` (the `esrt` directory), in entry order;
/// `None` when there is no ESRT.
pub fn read(dir: &Path) -> anyhow::Result<Option<Vec<EsrtEntry>>> {
    let entries = dir.join("entries");
    if !entries.is_dir() {
        return Ok(None);
    }
    let mut names: Vec<(u32, String)> = Vec::new();
    for e in
        std::fs::read_dir(&entries).with_context(|| format!("listing {}", entries.display()))?
    {
        let e = e.with_context(|| format!("listing {}", entries.display()))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(n) = entry_number(&name) {
            names.push((n, name));
        }
    }
    names.sort_unstable_by_key(|(n, _)| *n);
    names.truncate(MAX_ENTRIES);
    let mut out = Vec::new();
    for (_, name) in names {
        let mut files = BTreeMap::new();
        for file in ENTRY_FILES {
            let path = entries.join(&name).join(file);
            match std::fs::File::open(&path) {
                Ok(f) => {
                    let mut text = String::new();
                    f.take(FILE_MAX)
                        .read_to_string(&mut text)
                        .with_context(|| format!("reading {}", path.display()))?;
                    files.insert(file.to_string(), text);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
            }
        }
        out.push(EsrtEntry::parse(&name, &files)?);
    }
    Ok(Some(out))
}

/// The firmware state: the ESRT under `esrt` and the variables in `vars`.
pub fn firmware_state(esrt: &Path, vars: &mut Efivarfs) -> anyhow::Result<FirmwareState> {
    let entries = read(esrt)?;
    Ok(FirmwareState::read(vars, entries))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uefi::esrt::test_support::entry_files;
    use crate::uefi::version::FwVersion;

    fn write_entry(dir: &Path, name: &str, files: &BTreeMap<String, String>) {
        let d = dir.join("entries").join(name);
        std::fs::create_dir_all(&d).unwrap();
        for (f, text) in files {
            std::fs::write(d.join(f), text).unwrap();
        }
    }

    #[test]
    fn a_fake_tree_in_entry_order() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()).unwrap(), None);
        write_entry(dir.path(), "entry10", &entry_files(3, 0, 0, 0));
        write_entry(dir.path(), "entry2", &entry_files(2, 0, 0, 0));
        std::fs::create_dir_all(dir.path().join("entries/other")).unwrap();
        let got = read(dir.path()).unwrap().unwrap();
        let order: Vec<(&str, u32)> = got
            .iter()
            .map(|e| (e.name.as_str(), e.fw_version.0))
            .collect();
        assert_eq!(order, [("entry2", 2), ("entry10", 3)]);

        let mut broken = entry_files(1, 0, 0, 0);
        broken.remove("fw_class");
        write_entry(dir.path(), "entry11", &broken);
        std::fs::remove_file(dir.path().join("entries/entry11/fw_class")).ok();
        assert_eq!(
            read(dir.path()).unwrap_err().to_string(),
            "ESRT entry11: no fw_class"
        );
    }

    #[test]
    fn state_from_both_trees() {
        let dir = tempfile::tempdir().unwrap();
        write_entry(
            &dir.path().join("esrt"),
            "entry0",
            &entry_files(0x0024_0403, 0x0024_0403, 0x0024_0403, 0),
        );
        let vars = dir.path().join("efivars");
        std::fs::create_dir(&vars).unwrap();
        std::fs::write(
            vars.join("BootChainFwCurrent-781e084c-a330-417c-b678-38e696380cb9"),
            [6, 0, 0, 0, 1, 0, 0, 0],
        )
        .unwrap();
        let s = firmware_state(&dir.path().join("esrt"), &mut Efivarfs::new(&vars)).unwrap();
        assert_eq!(s.running_version(None), Some(FwVersion::new(36, 4, 3)));
        assert_eq!(s.current_chain, Some(crate::bup::board::Slot::B));
    }
}
