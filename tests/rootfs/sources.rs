//! Local sources: paths, file:// URLs, stdin, the `.sha256` file beside a
//! tarball, and broken or unknown streams.

use std::io::Write;
use std::path::Path;
use std::process::Stdio;

fn small_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, body) in [
        ("etc/hostname", &b"jetson\n"[..]),
        ("big", &[42u8; 200_000][..]),
    ] {
        let mut h = tar::Header::new_ustar();
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        b.append_data(&mut h, name, body).unwrap();
    }
    b.into_inner().unwrap()
}

fn run(args: &[&str], dir: &Path, stdin: Option<&[u8]>) -> (i32, String, String) {
    let mut cmd = crate::support::sysinstall();
    cmd.args(["unpack", "--progress", "none"])
        .args(args)
        .arg(dir);
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    if let Some(data) = stdin {
        child.stdin.take().unwrap().write_all(data).unwrap();
    }
    let o = child.wait_with_output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        crate::support::stdout(&o),
        crate::support::stderr(&o),
    )
}

#[test]
fn path_file_url_and_stdin() {
    let d = tempfile::tempdir().unwrap();
    let zst = zstd::encode_all(small_tar().as_slice(), 3).unwrap();
    let file = d.path().join("image.tar.zst");
    std::fs::write(&file, &zst).unwrap();
    for (i, src) in [
        file.display().to_string(),
        format!("file://{}", file.display()),
        "-".into(),
    ]
    .iter()
    .enumerate()
    {
        let dest = d.path().join(format!("out{i}"));
        std::fs::create_dir(&dest).unwrap();
        let stdin = (src == "-").then_some(zst.as_slice());
        let (code, out, err) = run(&[src], &dest, stdin);
        assert_eq!(code, 0, "{src}: {err}");
        assert!(out.contains("2 entries") && out.contains("zstd"), "{out}");
        assert_eq!(
            std::fs::read(dest.join("etc/hostname")).unwrap(),
            b"jetson\n"
        );
    }
}

#[test]
fn sidecar_sha256_is_checked_before_writing() {
    let d = tempfile::tempdir().unwrap();
    let file = d.path().join("image.tar");
    std::fs::write(&file, small_tar()).unwrap();
    let good = crate::support::sha256_file(&file);
    let dest = d.path().join("out");
    std::fs::create_dir(&dest).unwrap();

    std::fs::write(
        d.path().join("image.tar.sha256"),
        format!("{good}  image.tar\n"),
    )
    .unwrap();
    let (code, out, err) = run(&[file.to_str().unwrap()], &dest, None);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("sha256 {good} (verified)")), "{out}");

    std::fs::remove_dir_all(&dest).unwrap();
    std::fs::create_dir(&dest).unwrap();
    std::fs::write(
        d.path().join("image.tar.sha256"),
        format!("{}  image.tar\n", "1".repeat(64)),
    )
    .unwrap();
    let (code, _, err) = run(&[file.to_str().unwrap()], &dest, None);
    assert_eq!(code, 3, "nothing may be written: {err}");
    assert!(
        err.contains("SHA-256 mismatch") && err.contains("image.tar.sha256 expects 1111"),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(&dest).unwrap().count(), 0);

    // --rootfs-sha256 wins over the file beside the tarball.
    let (code, _, err) = run(
        &["--rootfs-sha256", &good, file.to_str().unwrap()],
        &dest,
        None,
    );
    assert_eq!(code, 0, "{err}");
}

#[test]
fn broken_streams_name_the_format_and_offset() {
    let d = tempfile::tempdir().unwrap();
    let tar = small_tar();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    let gz = gz.finish().unwrap();
    let cut = &gz[..gz.len() / 2];
    let dest = d.path().join("out");
    std::fs::create_dir(&dest).unwrap();
    let (code, _, err) = run(&["-"], &dest, Some(cut));
    assert_eq!(code, 4, "{err}");
    assert!(
        err.contains("gzip data is corrupt") && err.contains("near compressed byte"),
        "{err}"
    );

    let (code, _, err) = run(&["-"], &dest, Some(&[b'x'; 4096]));
    assert_eq!(code, 4, "{err}");
    assert!(
        err.contains("not a tar archive, nor zstd, gzip, xz or bzip2"),
        "{err}"
    );

    // A plain tar cut inside a member.
    let (code, _, err) = run(&["-"], &dest, Some(&tar[..100_000]));
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("truncated"), "{err}");
}
