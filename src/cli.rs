//! Command-line definitions (clap derive). The doc comments are the `--help`
//! text. Nothing here decides anything: each subcommand's handler takes its
//! args struct.
//!
//! Names, flags and values spelled out in the project's issues are interfaces
//! that recipes and lab scripts call; keep them.

use crate::rootfs::http::Secret;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// `--version`: the package version and the build date (build.rs), which the
/// upgrader's /init takes as the earliest date its clock can be right.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (built ",
    env!("SYSINSTALL_BUILD_DATE"),
    ")"
);

/// Re-lay-out and re-install an NVIDIA Jetson eMMC in place.
///
/// Without a subcommand, `sysinstall [OPTIONS] [ROOTFS] [DATA]` runs `install`.
#[derive(Debug, Parser)]
#[command(
    name = "sysinstall",
    version = VERSION,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    after_help = crate::exit::EXIT_CODES_HELP
)]
pub struct Cli {
    /// What to do (default: install).
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Options of the default `install` command.
    #[command(flatten)]
    pub install: InstallArgs,

    /// More diagnostics on stderr (-v info, -vv debug, -vvv trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    /// Only errors on stderr.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Install: partition, mkfs, unpack both slots, data, boot partitions (the default).
    #[command(after_help = crate::exit::EXIT_CODES_HELP)]
    Install(Box<InstallArgs>),
    /// Convert a flash layout XML (or partition_table CSV) into the eMMC partition table.
    #[command(after_help = crate::exit::EXIT_CODES_HELP)]
    Layout(LayoutArgs),
    /// Zap and write the GPT of a device or image file, and make the kernel see it.
    #[command(after_help = crate::exit::EXIT_CODES_HELP)]
    Partition(PartitionArgs),
    /// Compare a device's current GPT with a layout: keep/create/move/resize/delete.
    #[command(after_help = crate::exit::EXIT_CODES_HELP)]
    Plan(PlanArgs),
    /// Unpack a rootfs tarball into one or more directories from one decompressed stream.
    #[command(after_help = crate::exit::EXIT_CODES_HELP)]
    Unpack(UnpackArgs),
    /// Inspect, check and write bootloader update payloads (BUP).
    #[command(subcommand)]
    Bup(BupCommand),
    /// Orin (T234) boot firmware after an update: was the capsule applied, to which
    /// chain, does the other chain need a second pass (and stage it with --stage).
    #[command(after_help = crate::exit::EXIT_CODES_HELP)]
    Status(StatusArgs),
}

/// `sysinstall status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
    pub format: ReportFormat,

    /// The same as --format json.
    #[arg(long)]
    pub json: bool,

    /// Stage the second pass: check this capsule (the running firmware's
    /// version, for this board), put it into the ESP as
    /// EFI/UpdateCapsule/TEGRA_BL.Cap and request it (OsIndications) after
    /// clearing what would cancel it. Applied at the next reboot.
    #[arg(long, value_name = "CAPSULE")]
    pub stage: Option<PathBuf>,

    /// The ESP for --stage: its mounted directory, or its partition
    /// (default /dev/disk/by-partlabel/esp, mounted for the copy).
    #[arg(long, value_name = "PATH", requires = "stage")]
    pub esp: Option<PathBuf>,

    /// Board identity overrides (used when TegraPlatformSpec is not set).
    #[command(flatten)]
    pub board: BoardArgs,

    /// Read /sys/firmware/efi (ESRT, efivars), /dev and the board files
    /// under this directory (test rigs).
    #[arg(long, value_name = "DIR", hide = true)]
    pub sysroot: Option<PathBuf>,
}

/// Output format of `layout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LayoutFormat {
    /// Human-readable, like `sgdisk --print`.
    Table,
    /// tegra-sysinstall `partition_table` CSV.
    Csv,
    /// Stable JSON for recipes and automation.
    Json,
    /// The boot device's partitions as `name:offset:length` lines
    /// (tegra-boot-tools' boot-partitions.conf).
    BootConf,
}

/// Output format of `plan` and `bup list`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    /// Human-readable.
    Table,
    /// Stable JSON.
    Json,
}

/// Where a layout comes from and how its placeholders are filled.
#[derive(Debug, Clone, Default, Args)]
pub struct LayoutSource {
    /// Flash layout XML or partition_table CSV.
    #[arg(long, value_name = "FILE")]
    pub layout: Option<PathBuf>,

    /// Substitute a placeholder before anything else (repeatable), e.g. APPSIZE=15032385536.
    #[arg(long = "set", value_name = "NAME=VALUE")]
    pub set: Vec<String>,
}

/// `sysinstall layout`.
#[derive(Debug, Args)]
pub struct LayoutArgs {
    /// Flash layout XML (t186, t194, t234, t210) or partition_table CSV.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,

    /// Substitute a placeholder before anything else (repeatable), e.g. APPSIZE=15032385536.
    #[arg(long = "set", value_name = "NAME=VALUE")]
    pub set: Vec<String>,

    /// Size of the target disk in the layout's sectors: 512 bytes, or 4096
    /// when its device says sector_size="4096" (default: the XML's num_sectors).
    #[arg(long, value_name = "N", conflicts_with = "device")]
    pub disk_sectors: Option<u64>,

    /// Take the disk size from this block device or image file.
    #[arg(long, value_name = "DEV")]
    pub device: Option<PathBuf>,

    /// Output format.
    #[arg(long, value_enum, default_value_t = LayoutFormat::Table)]
    pub format: LayoutFormat,
}

/// `sysinstall partition`.
#[derive(Debug, Args)]
pub struct PartitionArgs {
    /// Layout file and placeholder values.
    #[command(flatten)]
    pub layout: LayoutSource,

    /// Block device or regular image file to partition.
    #[arg(long, value_name = "DEV")]
    pub device: PathBuf,

    /// Print what would be written; change nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
}

/// `sysinstall plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Layout file and placeholder values.
    #[command(flatten)]
    pub layout: LayoutSource,

    /// Block device or image file whose current GPT is compared.
    #[arg(long, value_name = "DEV")]
    pub device: PathBuf,

    /// Output format.
    #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
    pub format: ReportFormat,
}

/// How progress is shown on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum ProgressMode {
    /// A bar on a terminal, plain lines otherwise.
    #[default]
    Auto,
    /// Always the bar.
    Bar,
    /// One plain line every few seconds.
    Plain,
    /// Nothing.
    None,
}

/// How http(s) and OCI sources are fetched: the same for the rootfs, the
/// data tarball, `URL.sha256` and registry manifests.
#[derive(Debug, Clone, Default, Args)]
pub struct SourceArgs {
    /// HTTP header for every request to a source's own server, never to
    /// another host it redirects to (repeatable), e.g. 'X-Api-Key: 123'.
    #[arg(long = "header", value_name = "'NAME: VALUE'")]
    pub headers: Vec<Secret>,

    /// Send `Authorization: Bearer TOKEN` to a source's own server (for
    /// oci://, the registry token). A command line is visible in `ps`:
    /// prefer SYSINSTALL_BEARER=TOKEN in the environment, or --bearer-file.
    #[arg(long, value_name = "TOKEN")]
    pub bearer: Option<Secret>,

    /// Read the bearer token from FILE (mode 0600 or stricter).
    #[arg(long, value_name = "FILE", conflicts_with = "bearer")]
    pub bearer_file: Option<PathBuf>,

    /// `bearer-file` of the site configuration: used when neither the
    /// command line nor the environment gives a token.
    #[arg(skip)]
    pub site_bearer_file: Option<PathBuf>,

    /// Also trust the CA certificate(s) in this PEM file for https:// and
    /// oci:// (besides the built-in Mozilla roots).
    #[arg(long, value_name = "FILE")]
    pub cacert: Option<PathBuf>,

    /// Do NOT check server certificates (warned at every connection and
    /// recorded in the summary). Only for a lab; prefer --cacert.
    #[arg(long)]
    pub insecure_tls: bool,

    /// How many times to reconnect (resuming with Range) after a dropped or
    /// stalled connection [default: 5].
    #[arg(long, value_name = "N")]
    pub retries: Option<u32>,

    /// Drop and resume a connection that brings no data for this long
    /// (also the connect timeout) [default: 30].
    #[arg(long, value_name = "SECONDS")]
    pub stall_timeout: Option<u64>,
}

/// `sysinstall unpack`.
#[derive(Debug, Args)]
pub struct UnpackArgs {
    /// Tarball: a path, file://, http://, https://, tftp://HOST[:PORT]/PATH, oci://REGISTRY/REPO:TAG (or
    /// @sha256:DIGEST), oci+http://, or - for stdin. Registry login: OCI_USERNAME and
    /// OCI_PASSWORD; proxies: http_proxy, https_proxy, no_proxy.
    #[arg(value_name = "SOURCE")]
    pub source: String,

    /// Destination directories; every one receives the whole tree.
    #[arg(value_name = "DIR", required = true)]
    pub dirs: Vec<PathBuf>,

    /// Expected SHA-256 of the (compressed) tarball.
    #[arg(long, value_name = "HEX")]
    pub rootfs_sha256: Option<String>,

    /// Keep existing files that are newer than the archive's (for data tarballs).
    #[arg(long)]
    pub keep_newer_files: bool,

    /// Progress display.
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    pub progress: ProgressMode,

    /// http(s) and OCI options.
    #[command(flatten)]
    pub source_opts: SourceArgs,

    /// Do not flush the destinations' filesystems (syncfs) at the end.
    #[arg(long)]
    pub no_sync: bool,
}

/// Slot selector for `bup write --slot`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SlotArg {
    /// Slot A (partitions without suffix).
    A,
    /// Slot B (`_b` partitions).
    B,
}

/// SoC family override.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SocArg {
    /// TX2 family.
    T186,
    /// AGX Xavier, Xavier NX.
    T194,
    /// TX1, Nano.
    T210,
}

/// Board identity overrides, for test rigs and boards with unreadable EEPROMs.
#[derive(Debug, Clone, Default, Args)]
pub struct BoardArgs {
    /// Use this TNSPEC instead of building it from EEPROM, fuses and config.
    #[arg(long, value_name = "SPEC")]
    pub tnspec: Option<String>,

    /// Machine name (overrides the config file).
    #[arg(long, value_name = "NAME")]
    pub machine: Option<String>,
}

/// `sysinstall bup ...`.
#[derive(Debug, Subcommand)]
pub enum BupCommand {
    /// List a payload's header and entries.
    #[command(after_help = crate::exit::EXIT_CODES_HELP)]
    List {
        /// The payload file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
        format: ReportFormat,
    },
    /// Check that a payload can be installed on this board (exit 0 only if it can).
    #[command(after_help = crate::exit::EXIT_CODES_HELP)]
    Check(BupCheckArgs),
    /// Write the boot partitions from a payload.
    #[command(after_help = crate::exit::EXIT_CODES_HELP)]
    Write(BupWriteArgs),
}

/// `sysinstall bup check`.
#[derive(Debug, Args)]
pub struct BupCheckArgs {
    /// The payload file.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,

    /// Board identity overrides.
    #[command(flatten)]
    pub board: BoardArgs,

    /// Layout file and placeholder values.
    #[command(flatten)]
    pub layout: LayoutSource,

    /// Size of the user-area disk in the layout's sectors, for a layout
    /// without num_sectors (t210 XMLs, partition_table CSVs) (default: the
    /// XML's num_sectors, else the size of /dev/mmcblk0).
    #[arg(long, value_name = "N")]
    pub disk_sectors: Option<u64>,

    /// SoC family (default: from the running system, else from the layout).
    #[arg(long, value_enum)]
    pub soc: Option<SocArg>,

    /// Output format.
    #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
    pub format: ReportFormat,

    /// Read /sys, /proc, /etc/sysinstall and /dev/disk/by-partlabel under
    /// this directory (test rigs).
    #[arg(long, value_name = "DIR", hide = true)]
    pub sysroot: Option<PathBuf>,
}

/// `sysinstall bup write`.
#[derive(Debug, Args)]
pub struct BupWriteArgs {
    /// The payload file.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,

    /// Initialize: write both slots and the non-redundant partitions, rebuild
    /// the boot device's partition table, reset slot metadata.
    #[arg(long, conflicts_with = "slot")]
    pub initialize: bool,

    /// Update only this slot and leave slot metadata alone.
    #[arg(long, value_enum)]
    pub slot: Option<SlotArg>,

    /// Print the exact write plan; change nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Boot device(s): boot0 then boot1 of the eMMC, or the SPI flash
    /// (default: from the layout, /dev/mmcblk0boot0 /dev/mmcblk0boot1 or /dev/mtdblock0).
    #[arg(long = "boot-device", value_name = "DEV")]
    pub boot_devices: Vec<PathBuf>,

    /// Where user-area partitions are found: a whole-disk device or image
    /// whose GPT is read (default: /dev/disk/by-partlabel, else /dev/mmcblk0).
    #[arg(long, value_name = "DEV")]
    pub user_device: Option<PathBuf>,

    /// SoC family (default: from the running system, else from the layout).
    #[arg(long, value_enum)]
    pub soc: Option<SocArg>,

    /// Board identity overrides.
    #[command(flatten)]
    pub board: BoardArgs,

    /// Layout file and placeholder values.
    #[command(flatten)]
    pub layout: LayoutSource,

    /// Size of the user-area disk in the layout's sectors, for a layout
    /// without num_sectors (t210 XMLs, partition_table CSVs) (default: the
    /// size of --user-device, else the XML's num_sectors, else the size of
    /// /dev/mmcblk0).
    #[arg(long, value_name = "N")]
    pub disk_sectors: Option<u64>,

    /// Read /sys, /proc, /etc/sysinstall and /dev/disk/by-partlabel under
    /// this directory (test rigs).
    #[arg(long, value_name = "DIR", hide = true)]
    pub sysroot: Option<PathBuf>,
}

/// Install mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum ModeArg {
    /// Decide from the plan: initial when the layout is not in place, else update.
    #[default]
    Auto,
    /// Re-lay-out the disk and install everything.
    Initial,
    /// Layout already in place: write only the inactive slot and switch to it.
    Update,
}

/// Machine-readable event stream format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EventsFormat {
    /// JSON Lines.
    Json,
    /// One framed line per event for a serial console:
    /// `@@sysinstall <crc32> <json>` (README: "Driving the console from a program").
    Console,
}

/// `sysinstall install` (and `sysinstall` alone).
#[derive(Debug, Clone, Default, Args)]
pub struct InstallArgs {
    /// Rootfs tarball: path, file://, http(s)://, tftp://, oci://REGISTRY/REPO:TAG (or
    /// @sha256:DIGEST), oci+http:// or - (default /installer/image.tar.gz, or .tar.zst).
    /// Registry login: OCI_USERNAME and OCI_PASSWORD; proxies: http_proxy,
    /// https_proxy, no_proxy.
    #[arg(value_name = "ROOTFS")]
    pub rootfs: Option<String>,

    /// Data tarball for DATA, from the same kinds of sources (default
    /// /installer/data.tar.gz when present).
    #[arg(value_name = "DATA")]
    pub data: Option<String>,

    /// http(s) and OCI options.
    #[command(flatten)]
    pub source_opts: SourceArgs,

    /// Layout file and placeholder values.
    #[command(flatten)]
    pub layout: LayoutSource,

    /// Target disk (default: the eMMC user area, /dev/mmcblk0).
    #[arg(long, value_name = "DEV")]
    pub device: Option<PathBuf>,

    /// Bootloader update payload (default: from the new rootfs, /opt/ota_package/...).
    /// On Orin (T234): the kernel payload (kernel_only_payload or tegra-kernel.cap).
    #[arg(long, value_name = "FILE")]
    pub bup: Option<PathBuf>,

    /// Orin (T234): the UEFI capsule to stage in the ESP for the boot firmware
    /// (default: /opt/nvidia/UpdateCapsule/tegra-bl.cap from the new rootfs).
    #[arg(long, value_name = "FILE", conflicts_with = "no_capsule")]
    pub capsule: Option<PathBuf>,

    /// Orin (T234): leave the boot firmware as it is (no capsule); the board
    /// is switched to the new slot with BootChainFwNext instead.
    #[arg(long)]
    pub no_capsule: bool,

    /// Orin (T234): the UEFI launcher for the ESP, EFI/BOOT/BOOTAA64.efi
    /// (default: boot/efi/EFI/BOOT/BOOTAA64.efi from the new rootfs, else
    /// /usr/share/sysinstall/BOOTAA64.efi).
    #[arg(long, value_name = "FILE")]
    pub launcher: Option<PathBuf>,

    /// Boot device(s) for the payload (see `bup write --help`).
    #[arg(long = "boot-device", value_name = "DEV")]
    pub boot_devices: Vec<PathBuf>,

    /// SoC family (default: from the running system, else from the layout).
    #[arg(long, value_enum)]
    pub soc: Option<SocArg>,

    /// Initial install or update (default: decided from the plan).
    #[arg(long, value_enum)]
    pub mode: Option<ModeArg>,

    /// Expected SHA-256 of the rootfs tarball (default: NAME.sha256 beside a local file).
    #[arg(long, value_name = "HEX")]
    pub rootfs_sha256: Option<String>,

    /// A partition image instead of a tarball (repeatable): raw or Android
    /// sparse, compressed or not (told from its bytes), from the same kinds
    /// of sources as ROOTFS. APP=IMAGE fills every slot the run writes from
    /// one stream (instead of ROOTFS); another NAME fills that partition.
    /// Holes are not written (nor, with a bmap beside a local image, the
    /// blocks it does not map), what is written is read back, and an ext4
    /// filesystem smaller than its partition is grown to it.
    #[arg(long = "image", value_name = "NAME=SOURCE")]
    pub images: Vec<String>,

    /// A whole-disk image written over the target device instead of a
    /// layout and a rootfs: raw (.img, .raw, .wic) or Android sparse,
    /// compressed or not, from the same kinds of sources as ROOTFS. Read
    /// through once before anything is written; its partition table goes
    /// last; a GPT's backup is moved to the end of a larger device.
    #[arg(long, value_name = "SOURCE")]
    pub disk_image: Option<String>,

    /// Expected SHA-256 of the --disk-image (default: NAME.sha256 beside it).
    #[arg(long, value_name = "HEX", requires = "disk_image")]
    pub disk_image_sha256: Option<String>,

    /// The --disk-image's block map (`bmaptool create`; path or URL): only
    /// its mapped blocks are written and read back, each range checked
    /// against its SHA-256 (default: IMAGE.bmap beside a local image).
    #[arg(
        long,
        value_name = "FILE",
        requires = "disk_image",
        conflicts_with = "no_bmap"
    )]
    pub bmap: Option<String>,

    /// Ignore a bmap beside a local image (--disk-image, --image): write
    /// every byte.
    #[arg(long)]
    pub no_bmap: bool,

    /// Save DATA (or UDA) before it is re-created and restore it afterwards.
    /// The copy is staged in a partition of the new layout written after the
    /// restore (APP_b first), so a re-run after a power cut restores it; in
    /// memory, lost on a power cut, only when no partition has room (the
    /// plan says which). When DATA keeps its place it is not touched.
    #[arg(long, conflicts_with = "discard_data")]
    pub keep_data: bool,

    /// Key of the encrypted (`crypt-`) partitions' LUKS2 containers: every
    /// byte of FILE is the key (as `cryptsetup --key-file` reads it).
    #[arg(long, value_name = "FILE", conflicts_with = "luks_key_command")]
    pub luks_key_file: Option<PathBuf>,

    /// Key of the `crypt-` partitions from a command (run once with `sh -c`
    /// before anything is written; its standard output is the key, never
    /// logged): the hook for a key derived from a secure-boot unit's
    /// hardware, e.g. `keystoretool -p`.
    #[arg(long, value_name = "CMD")]
    pub luks_key_command: Option<String>,

    /// Let an initial install erase a DATA (or UDA) that holds a filesystem.
    /// Without it, or --keep-data, such an install is refused: user data is
    /// never erased silently (--yes does not imply it).
    #[arg(long)]
    pub discard_data: bool,

    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,

    /// Reboot once the install passed, after everything is flushed and the
    /// summary printed (as the old tool's menu offered). Not after a failure
    /// or a dry run.
    #[arg(long)]
    pub reboot: bool,

    /// Do not carry the board's machine-id into new slots whose rootfs has
    /// none (by default it is read from the slot the board ran, before that
    /// is replaced, as the old installer kept it).
    #[arg(long)]
    pub new_machine_id: bool,

    /// Show the preflight and plan, then stop.
    #[arg(long)]
    pub dry_run: bool,

    /// Skip `e2fsck -p` after unpacking each slot.
    #[arg(long)]
    pub no_fsck: bool,

    /// Install without writing the boot partitions (or switching slots):
    /// needed when the rootfs carries no bootloader update payload and none
    /// is given with --bup; the board keeps booting its old boot chain.
    #[arg(long)]
    pub no_bootloader: bool,

    /// After unpacking, list both slot trees (contents hashed) and fail if they differ.
    #[arg(long)]
    pub verify_slots: bool,

    /// Extra mke2fs arguments, for every filesystem or for one with
    /// `NAME:ARGS` (repeatable), e.g. `-E nodiscard` or `DATA:-O ^metadata_csum`.
    #[arg(
        long = "mkfs-options",
        value_name = "[NAME:]ARGS",
        allow_hyphen_values = true
    )]
    pub mkfs_options: Vec<String>,

    /// Emit machine-readable events (JSON Lines, or framed lines for a
    /// serial console) on stdout or --events-fd.
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub events: Option<EventsFormat>,

    /// File descriptor for --events (default: stdout).
    #[arg(long, value_name = "N", requires = "events")]
    pub events_fd: Option<i32>,

    /// Progress display on stderr.
    #[arg(long, value_enum)]
    pub progress: Option<ProgressMode>,

    /// Site defaults (default: /etc/sysinstall.conf).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Start over even if the disk records an interrupted install.
    #[arg(long)]
    pub restart: bool,

    /// Read /proc, /sys and the board configuration under DIR (test rigs).
    #[arg(long, value_name = "DIR", hide = true)]
    pub sysroot: Option<PathBuf>,

    /// Board identity overrides.
    #[command(flatten)]
    pub board: BoardArgs,
}

impl From<SocArg> for crate::layout::Soc {
    fn from(a: SocArg) -> Self {
        match a {
            SocArg::T186 => crate::layout::Soc::T186,
            SocArg::T194 => crate::layout::Soc::T194,
            SocArg::T210 => crate::layout::Soc::T210,
        }
    }
}

impl From<ModeArg> for crate::install::ModeRequest {
    fn from(a: ModeArg) -> Self {
        match a {
            ModeArg::Auto => crate::install::ModeRequest::Auto,
            ModeArg::Initial => crate::install::ModeRequest::Initial,
            ModeArg::Update => crate::install::ModeRequest::Update,
        }
    }
}

impl ProgressMode {
    /// The progress display for stderr (`auto` looks at the terminal).
    pub fn style(self) -> crate::progress::Style {
        use crate::progress::Style;
        match self {
            ProgressMode::Auto => Style::for_stderr(),
            ProgressMode::Bar => Style::Bar,
            ProgressMode::Plain => Style::Plain,
            ProgressMode::None => Style::Off,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn bare_positionals_mean_install() {
        let cli = Cli::try_parse_from(["sysinstall", "--yes", "/x/image.tar.zst"]).unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.install.rootfs.as_deref(), Some("/x/image.tar.zst"));
        assert!(cli.install.yes);
    }

    #[test]
    fn layout_interface_as_documented() {
        let cli = Cli::try_parse_from([
            "sysinstall",
            "layout",
            "flash.xml",
            "--set",
            "APPSIZE=1024",
            "--disk-sectors",
            "61071360",
            "--format",
            "json",
        ])
        .unwrap();
        match cli.command {
            Some(Command::Layout(a)) => {
                assert_eq!(a.set, ["APPSIZE=1024"]);
                assert_eq!(a.disk_sectors, Some(61071360));
                assert_eq!(a.format, LayoutFormat::Json);
            }
            other => panic!("{other:?}"),
        }
        assert!(Cli::try_parse_from([
            "sysinstall",
            "layout",
            "f.xml",
            "--disk-sectors",
            "1",
            "--device",
            "/dev/x"
        ])
        .is_err());
    }

    #[test]
    fn bup_write_rejects_initialize_with_slot() {
        assert!(Cli::try_parse_from([
            "sysinstall",
            "bup",
            "write",
            "p",
            "--initialize",
            "--slot",
            "a"
        ])
        .is_err());
    }
}
