//! Writes the generated part of the seed corpora, using the project's own
//! code: CSVs and GPT images of the sample layouts as placed by the layout
//! engine, GPT header sectors and entry arrays, journal records, a site
//! configuration, OCI manifests and the other text the source parsers
//! read. `seeds.sh` adds the sample files and real filesystems.
//!
//! Usage: `make-seeds CORPUS_DIR LAYOUT_FILE...`

use std::path::{Path, PathBuf};
use sysinstall::gpt::{self, GptEntry, GptHeader};
use sysinstall::guid::Guid;
use sysinstall::install::{journal, stage};
use sysinstall::layout::{self, csv, LoadOptions, PartitionTable};

/// A small disk for plain (non-sparse) GPT images: 128 sectors, 64 KiB.
const SMALL_DISK: u64 = 128;

fn write(dir: &Path, target: &str, name: &str, bytes: &[u8]) {
    let d = dir.join(target);
    std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("creating {}: {e}", d.display()));
    let f = d.join(name);
    std::fs::write(&f, bytes).unwrap_or_else(|e| panic!("writing {}: {e}", f.display()));
}

fn entries_of(t: &PartitionTable) -> Vec<(u32, GptEntry)> {
    t.partitions
        .iter()
        .map(|p| {
            let unique = p
                .unique_guid
                .unwrap_or_else(|| Guid::from_bytes([p.number as u8; 16]));
            let e = GptEntry {
                type_guid: p.type_guid,
                unique_guid: unique,
                first_lba: p.first_lba,
                last_lba: p.last_lba,
                attributes: 0,
                name: p.name.clone(),
            };
            (p.number, e)
        })
        .collect()
}

/// The two headers and the entry array of a table on an `n`-sector disk.
fn gpt_parts(
    entries: &[(u32, GptEntry)],
    n: u64,
    first: u64,
    last: u64,
) -> (GptHeader, GptHeader, Vec<u8>) {
    let array = gpt::encode_entries(entries, gpt::ENTRY_COUNT).expect("encoding entries");
    let h = |my: u64, alt: u64, elba: u64| GptHeader {
        revision: gpt::REVISION_1_0,
        header_size: gpt::HEADER_SIZE,
        my_lba: my,
        alternate_lba: alt,
        first_usable_lba: first,
        last_usable_lba: last,
        disk_guid: Guid::from_bytes(*b"sysinstall-seeds"),
        partition_entry_lba: elba,
        num_partition_entries: gpt::ENTRY_COUNT,
        sizeof_partition_entry: gpt::ENTRY_SIZE,
        partition_entry_array_crc32: gpt::crc32(&array),
    };
    (h(1, n - 1, 2), h(n - 1, 1, n - 33), array)
}

/// The first and last 34 sectors of a disk carrying the table: protective
/// MBR, primary header and entries; backup entries and header.
fn head_and_tail(entries: &[(u32, GptEntry)], n: u64, first: u64, last: u64) -> (Vec<u8>, Vec<u8>) {
    let (primary, backup, array) = gpt_parts(entries, n, first, last);
    let mut head = gpt::protective_mbr(n).to_vec();
    head.extend_from_slice(&primary.encode());
    head.extend_from_slice(&array);
    let mut tail = vec![0u8; 512];
    tail.extend_from_slice(&array);
    tail.extend_from_slice(&backup.encode());
    (head, tail)
}

fn sparse_seed(mode: u8, n: u64, head: &[u8], tail: &[u8]) -> Vec<u8> {
    assert_eq!(
        head.len(),
        tail.len(),
        "the target splits the rest in halves"
    );
    let mut s = vec![mode | 2];
    s.extend_from_slice(&n.to_le_bytes());
    s.extend_from_slice(head);
    s.extend_from_slice(tail);
    s
}

fn gpt_seeds(dir: &Path, name: &str, t: &PartitionTable) {
    let entries = entries_of(t);
    let n = t.disk_sectors;
    let (head, tail) = head_and_tail(&entries, n, t.first_usable_lba, t.last_usable_lba);
    write(
        dir,
        "gpt_read",
        &format!("{name}.sparse"),
        &sparse_seed(0, n, &head, &tail),
    );
    // Primary destroyed: the backup must be found.
    let mut broken = head.clone();
    broken[512..1024].fill(0);
    write(
        dir,
        "gpt_read",
        &format!("{name}.backup-only"),
        &sparse_seed(0, n, &broken, &tail),
    );
    write(
        dir,
        "gpt_structs",
        &format!("{name}.header"),
        &head[512..1024],
    );
    let mut arr = vec![0u8];
    arr.extend_from_slice(&head[1024..]);
    write(dir, "gpt_structs", &format!("{name}.entries"), &arr);
}

fn small_gpt_seeds(dir: &Path) {
    let n = SMALL_DISK;
    let e = |name: &str, first: u64, last: u64| GptEntry {
        type_guid: sysinstall::guid::BASIC_DATA,
        unique_guid: Guid::from_bytes([first as u8; 16]),
        first_lba: first,
        last_lba: last,
        attributes: 0,
        name: name.into(),
    };
    let entries = vec![(1, e("APP", 34, 60)), (5, e("DATA", 61, 94))];
    let (primary, backup, array) = gpt_parts(&entries, n, 34, n - 34);
    let mut img = vec![0u8; (n * 512) as usize];
    img[..512].copy_from_slice(&gpt::protective_mbr(n));
    img[512..1024].copy_from_slice(&primary.encode());
    img[1024..1024 + array.len()].copy_from_slice(&array);
    let b = ((n - 33) * 512) as usize;
    img[b..b + array.len()].copy_from_slice(&array);
    img[((n - 1) * 512) as usize..].copy_from_slice(&backup.encode());
    let seed = |mode: u8, img: &[u8]| [&[mode][..], img].concat();
    write(dir, "gpt_read", "small.img", &seed(0, &img));
    write(dir, "gpt_read", "small.fixcrc.img", &seed(1, &img));
    let mut damaged = img.clone();
    damaged[512 + 40] ^= 0xff; // primary first_usable: its CRC breaks
    write(
        dir,
        "gpt_read",
        "small.primary-damaged.img",
        &seed(0, &damaged),
    );
    write(
        dir,
        "gpt_read",
        "small.primary-damaged.fixcrc.img",
        &seed(1, &damaged),
    );
    let mut short = img.clone();
    short.truncate(img.len() - 512);
    write(dir, "gpt_read", "small.truncated.img", &seed(4, &short));
    write(dir, "gpt_structs", "small.header", &img[512..1024]);
    write(
        dir,
        "gpt_structs",
        "small.backup-header",
        &img[img.len() - 512..],
    );
}

fn journal_seeds(dir: &Path) {
    for (i, mode) in [journal::InstallMode::Initial, journal::InstallMode::Update]
        .into_iter()
        .enumerate()
    {
        let content = journal::content_id(&["rootfs", "seed"]);
        let r =
            journal::Record::start(mode, i as u8, content, 1_700_000_000).expect("random nonce");
        write(dir, "journal", &format!("record.{i}"), &r.encode());
        let mut sector = gpt::protective_mbr(61_071_360);
        journal::store(&mut sector, Some(&r));
        write(dir, "journal", &format!("lba0.{i}"), &sector);
    }
}

fn data_stage_seeds(dir: &Path) {
    let mut dev = std::io::Cursor::new(Vec::new());
    let h = stage::write(&mut dev, 0, 1 << 20, [3; 32], |w| {
        w.write_all(b"a small archive stands in here")?;
        Ok(30)
    })
    .expect("writing into memory");
    write(dir, "data_stage", "copy", dev.get_ref());
    write(dir, "data_stage", "header", &h.encode());
}

fn config_seeds(dir: &Path) {
    let text = "# site defaults\nlayout = /usr/share/sysinstall/flash.xml\nset = APPSIZE=1073741824\n\
        set=PPTSIZE=16896\ndevice = \"/dev/mmcblk0\"\nboot-device = /dev/mmcblk0boot0\n\
        boot-device = /dev/mmcblk0boot1\nkeep-data = yes\nno-fsck = off\nmode = update\nsoc = t194\n\
        progress = json\nrootfs = 'file:///data/rootfs.tar.zst'\nrootfs-sha256 = 0123abcd\n\
        tnspec = 2888-400-0004--1-0-jetson-agx-xavier-devkit-mmcblk0p1\nmachine = jetson-agx-xavier-devkit\n";
    write(dir, "site_config", "site.conf", text.as_bytes());
}

/// Seeds for the BUP, boot-GPT and SMD/VER targets, from the project's
/// own encoders where it has them.
fn bup_seeds(dir: &Path) {
    use sysinstall::bup::{bootgpt, smd::Smd};
    // A V2 payload as BUP_generator.py lays it out (docs/spec/bup-format.md §6.1).
    let entries: [(&str, &[u8], u32, &str); 4] = [
        ("mb2", b"MB2DATA!", 0, ""),
        ("mb1", b"MB1-PROD", 2, ""),
        (
            "BCT",
            b"0123456789abcdef",
            0,
            "3310-B01---1-0-jetson-tx2-devkit-mmcblk0p1",
        ),
        (
            "kernel-dtb",
            b"DTB",
            0,
            "3310-B00---1-0-jetson-tx2-devkit-mmcblk0p1",
        ),
    ];
    let hs = 48usize;
    let mut off = hs + 120 * entries.len();
    let mut table = Vec::new();
    let mut data = Vec::new();
    for (name, payload, op, spec) in entries {
        let mut e = vec![0u8; 120];
        e[..name.len()].copy_from_slice(name.as_bytes());
        e[40..44].copy_from_slice(&(off as u32).to_le_bytes());
        e[44..48].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        e[48..52].copy_from_slice(&0x3275u32.to_le_bytes());
        e[52..56].copy_from_slice(&op.to_le_bytes());
        e[56..56 + spec.len()].copy_from_slice(spec.as_bytes());
        table.extend_from_slice(&e);
        data.extend_from_slice(payload);
        off += payload.len();
    }
    let total = (hs + table.len() + data.len()) as u32;
    let mut b = b"NVIDIA__BLOB__V2".to_vec();
    for v in [
        0x0102_0621u32,
        total,
        hs as u32,
        entries.len() as u32,
        0,
        total,
    ] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    b.extend_from_slice(&[0; 8]);
    b.extend_from_slice(&table);
    b.extend_from_slice(&data);
    write(dir, "bup_payload", "v2", &b);
    capsule_seeds(dir, &b);
    let mut old = b.clone();
    old[16..20].copy_from_slice(&0x0002_0000u32.to_le_bytes());
    write(dir, "bup_payload", "v2-old-version", &old);
    write(
        dir,
        "tnspec",
        "pair",
        b"3310-B01-1000-L.0-1-0-jetson-tx2-devkit-mmcblk0p1\03310-B01---1--jetson-tx2-devkit-",
    );

    // HTTP responses: by length, chunked with an extension and a trailer,
    // a resumed range, to the end of the connection.
    for (name, text) in [
        ("length", &b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nETag: \"x\"\r\n\r\nhello"[..]),
        (
            "chunked",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\nX: y\r\n\r\n",
        ),
        (
            "range",
            b"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 2-4/5\r\nContent-Length: 3\r\n\r\nllo",
        ),
        ("close", b"HTTP/1.0 200 OK\nServer: x\n\nbody to the end"),
    ] {
        write(dir, "http_response", name, text);
    }

    // The boot-device pseudo-GPT of a 4 MiB device: length, then its last 34 sectors.
    let len = 4u64 << 20;
    let parts = vec![
        sysinstall::layout::BootPartition {
            name: "BCT".into(),
            offset: 0,
            size: 32768,
        },
        sysinstall::layout::BootPartition {
            name: "mb1".into(),
            offset: 32768,
            size: 262144,
        },
        sysinstall::layout::BootPartition {
            name: "SMD".into(),
            offset: 294912,
            size: 4096,
        },
    ];
    if let Ok(enc) = bootgpt::encode(&parts, len, || Guid::from_bytes([7; 16])) {
        let mut dev = vec![0u8; len as usize];
        let h = bootgpt::header_offset(len) as usize;
        let e = bootgpt::entries_offset(len) as usize;
        dev[h..h + enc.header.len()].copy_from_slice(&enc.header);
        dev[e..e + enc.entries.len()].copy_from_slice(&enc.entries);
        let mut seed = len.to_le_bytes().to_vec();
        seed.extend_from_slice(&dev[dev.len() - 34 * 512..]);
        write(dir, "boot_gpt", "4mib", &seed);
    }
    if let Ok(smd) = Smd::new_full().encode() {
        let mut s = smd.to_vec();
        s.extend_from_slice(b"NV3\n# R32 , REVISION: 7.2\nBOARDID=3310 BOARDSKU=1000 FAB=B01\nBYTES:74 CHECKSUM:1234567890\n");
        write(dir, "smd_ver", "smd-v3", &s);
    }
    {
        use sysinstall::bup::bootinfo::{encode, Store};
        let store = Store {
            version: 3,
            flags: 1,
            failed_boots: 2,
            sernum: 7,
            vars: vec![(b"machine_id".to_vec(), b"0123456789abcdef".to_vec())],
        };
        if let Ok(b) = encode(&store) {
            write(dir, "bootinfo", "v3-machine-id", &b);
        }
    }
}

/// Capsules around a V2 seed and a small T234 (V3) payload: signed, unsigned
/// with a driver and vendor code, with a dependency expression.
fn capsule_seeds(dir: &Path, v2: &[u8]) {
    use sysinstall::bup::payload::{Builder as Bup, PayloadFormat};
    use sysinstall::uefi::capsule::Builder;
    use sysinstall::uefi::vars::TEGRA_FMP_IMAGE_TYPE;
    let mut v3 = Bup::new()
        .entry("mb1", b"mb1 dev", 1, "")
        .entry("mb1", b"mb1 prod", 2, "")
        .entry(
            "VER",
            b"NV3",
            0,
            "3701-300-0000--1--jetson-agx-orin-devkit-",
        )
        .entry("kernel", b"boot.img", 0, "")
        .entry(
            "kernel-dtb",
            b"dtb",
            0,
            "3767--0005--1--jetson-orin-nano-devkit-",
        );
    v3.format = PayloadFormat::V3;
    v3.version = 0x0103_0622;
    let v3 = v3.build();
    let signed = Builder::new(TEGRA_FMP_IMAGE_TYPE, 0x0024_0403);
    write(dir, "capsule", "signed-v3", &signed.build(&v3));
    write(dir, "capsule", "signed-v2", &signed.build(v2));
    let mut odd = signed.clone();
    odd.cert = None;
    odd.drivers = vec![b"driver".to_vec()];
    odd.vendor_code = b"vendor".to_vec();
    write(dir, "capsule", "unsigned-driver-vendor", &odd.build(&v3));
    let mut dep = signed;
    dep.depex = Some(vec![
        0x01, 0, 5, 0x23, 0, 0x02, b'v', 0, 0x0A, 0x06, 0x03, 0x0D,
    ]);
    write(dir, "capsule", "depex", &dep.build(&v3));
}

/// Seeds for the `sources` target: what registries, token services and
/// the environment hand the source parsers (manifests as registries and
/// oras write them, an index, `WWW-Authenticate` values, references,
/// proxy settings, `no_proxy` lists).
fn source_seeds(dir: &Path) {
    let d = |b: &str| format!("sha256:{}", b.repeat(32));
    let layer = "application/vnd.oci.image.layer.v1.tar";
    let seeds: Vec<(&str, String)> = vec![
        (
            "manifest-oras",
            format!(
                "{{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\
                 \"config\":{{\"mediaType\":\"application/vnd.oci.empty.v1+json\",\"digest\":\"{}\",\"size\":2}},\
                 \"layers\":[{{\"mediaType\":\"{layer}\",\"digest\":\"{}\",\"size\":1048576,\
                 \"annotations\":{{\"org.opencontainers.image.title\":\"rootfs.tar.zst\"}}}},\
                 {{\"mediaType\":\"{layer}\",\"digest\":\"{}\",\"size\":81,\
                 \"annotations\":{{\"org.opencontainers.image.title\":\"rootfs.tar.zst.sha256\"}}}}]}}",
                d("44"),
                d("ab"),
                d("cd")
            ),
        ),
        (
            "manifest-docker",
            format!(
                "{{\"schemaVersion\":2,\"mediaType\":\"application/vnd.docker.distribution.manifest.v2+json\",\
                 \"layers\":[{{\"mediaType\":\"application/vnd.docker.image.rootfs.diff.tar.gzip\",\
                 \"digest\":\"{}\",\"size\":123}}]}}",
                d("01")
            ),
        ),
        (
            "index",
            format!(
                "{{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\",\"manifests\":[\
                 {{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"{}\",\"size\":400,\
                 \"platform\":{{\"os\":\"linux\",\"architecture\":\"amd64\"}}}},\
                 {{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"{}\",\"size\":400,\
                 \"platform\":{{\"os\":\"linux\",\"architecture\":\"arm64\",\"variant\":\"v8\"}}}}]}}",
                d("12"),
                d("34")
            ),
        ),
        (
            "challenge-bearer",
            "Bearer realm=\"https://auth.example/token\",service=\"registry.example\",\
             scope=\"repository:jetson/rootfs:pull\""
                .into(),
        ),
        (
            "challenge-two",
            "Basic realm=\"lab\", Bearer realm=\"https://a.example/t?x=1\",error=\"insufficient_scope\""
                .into(),
        ),
        ("ref-tag", "oci://registry.example:5000/jetson/rootfs:r36.4#rootfs.tar.zst".into()),
        ("ref-digest", format!("oci+http://[::1]:5000/a/b-c/d_e@{}", d("ef"))),
        ("ref-both", format!("registry.example/jetson/rootfs:latest@{}", d("0f"))),
        ("proxy", "http://user:p%40ss@proxy.example:3128/".into()),
        ("proxy-bare", "[fe80::1]:8080".into()),
        ("no-proxy", "localhost,.example.com,10.0.0.0/8,::1,registry.lab:5000,*".into()),
    ];
    for (name, text) in seeds {
        write(dir, "sources", name, text.as_bytes());
    }
}

fn main() {
    let mut args = std::env::args_os().skip(1).map(PathBuf::from);
    let dir = args
        .next()
        .expect("usage: make-seeds CORPUS_DIR LAYOUT_FILE...");
    let mut placed = 0;
    for path in args {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        for (tag, disk) in [("own", None), ("32g", Some(61_071_360))] {
            let opts = LoadOptions {
                set: vec![("APPSIZE".into(), "1073741824".into())],
                disk_sectors: disk,
            };
            let Ok(l) = layout::load(&path, &opts) else {
                continue;
            };
            placed += 1;
            if let Ok(text) = csv::write(&l.user, &name) {
                write(
                    &dir,
                    "layout_csv",
                    &format!("{name}.{tag}.csv"),
                    text.as_bytes(),
                );
            }
            gpt_seeds(&dir, &format!("{name}.{tag}"), &l.user);
        }
    }
    small_gpt_seeds(&dir);
    journal_seeds(&dir);
    data_stage_seeds(&dir);
    config_seeds(&dir);
    bup_seeds(&dir);
    source_seeds(&dir);
    eprintln!(
        "make-seeds: {placed} placed layouts written to {}",
        dir.display()
    );
}
