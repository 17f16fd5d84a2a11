// The boot partition tables the `bup` tests run against, shared by the
// library's unit tests and the integration tests through `include!`; the
// includer brings `BootPartition` into scope.
//
// TX2 and Nano are bup-format.md §3.2 to the byte; the others are laid out
// like their boards with offsets of our own, as bup-format.md §8 advises.

/// A boot partition table from `(name, offset, size)`.
pub fn table(rows: &[(&str, u64, u64)]) -> Vec<BootPartition> {
    rows.iter()
        .map(|&(name, offset, size)| BootPartition {
            name: name.into(),
            offset,
            size,
        })
        .collect()
}

/// The TX2 boot partitions of bup-format.md §3.2 (boot0 + boot1, 8 MiB).
pub fn tx2_boot() -> Vec<BootPartition> {
    table(&[
        ("BCT", 0, 32768),
        ("mb1", 32768, 262144),
        ("mb1_b", 294912, 262144),
        ("MB1_BCT", 557056, 65536),
        ("MB1_BCT_b", 622592, 65536),
        ("dram-ecc-fw", 688128, 55296),
        ("badpage-fw", 743424, 4608),
        ("badpage-fw_b", 748032, 4608),
        ("spe-fw", 752640, 131072),
        ("spe-fw_b", 883712, 131072),
        ("mb2", 1014784, 262144),
        ("mb2_b", 1276928, 262144),
        ("mts-preboot", 1539072, 262144),
        ("mts-preboot_b", 1801216, 262144),
        ("SMD", 2063360, 4096),
        ("SMD_b", 2067456, 4096),
        ("UBENV", 8224768, 32768),
        ("VER_b", 8257536, 32768),
        ("VER", 8323072, 32768),
    ])
}

/// An AGX Xavier-like boot area (boot0 + boot1, 8 MiB; offsets our own,
/// as bup-format.md §8 advises).
pub fn agx_boot() -> Vec<BootPartition> {
    table(&[
        ("BCT", 0, 32768),
        ("mb1", 32768, 262144),
        ("mb1_b", 294912, 262144),
        ("MB1_BCT", 557056, 65536),
        ("MB1_BCT_b", 622592, 65536),
        ("MEM_BCT", 688128, 65536),
        ("MEM_BCT_b", 753664, 65536),
        ("spe-fw", 819200, 131072),
        ("spe-fw_b", 950272, 131072),
        ("mb2", 1081344, 262144),
        ("mb2_b", 1343488, 262144),
        ("mts-preboot", 1605632, 262144),
        ("mts-preboot_b", 1867776, 262144),
        ("SMD", 2129920, 4096),
        ("SMD_b", 2134016, 4096),
        ("VER_b", 8192000, 65536),
        ("VER", 8257536, 65536),
    ])
}

/// A Xavier NX QSPI layout (32 MiB, everything bootloader-related in SPI).
pub fn nx_boot() -> Vec<BootPartition> {
    table(&[
        ("BCT", 0, 262144),
        ("mb1", 262144, 262144),
        ("mb1_b", 524288, 262144),
        ("MB1_BCT", 786432, 65536),
        ("MB1_BCT_b", 851968, 65536),
        ("MEM_BCT", 917504, 65536),
        ("MEM_BCT_b", 983040, 65536),
        ("spe-fw", 1048576, 262144),
        ("spe-fw_b", 1310720, 262144),
        ("mb2", 1572864, 262144),
        ("mb2_b", 1835008, 262144),
        ("cpu-bootloader", 2097152, 2097152),
        ("cpu-bootloader_b", 4194304, 2097152),
        ("SMD", 6291456, 4096),
        ("SMD_b", 6295552, 4096),
        ("mts-preboot", 6299648, 262144),
        ("mts-preboot_b", 6561792, 262144),
        ("VER_b", 33292288, 65536),
        ("VER", 33357824, 65536),
    ])
}

/// The Nano eMMC boot partitions of bup-format.md §3.2.
pub fn nano_emmc_boot() -> Vec<BootPartition> {
    table(&[
        ("BCT", 0, 1048576),
        ("NVC", 1048576, 262144),
        ("PT", 1310720, 131072),
        ("TBC", 1441792, 196608),
        ("RP1", 1638400, 1048576),
        ("EBT", 2686976, 655360),
        ("WB0", 3342336, 131072),
        ("BPF", 3473408, 262144),
        ("BPF-DTB", 3735552, 458752),
        ("NVC-1", 4194304, 262144),
        ("PT-1", 4456448, 131072),
        ("TBC-1", 4587520, 196608),
        ("RP1-1", 4784128, 1048576),
        ("EBT-1", 5832704, 655360),
        ("WB0-1", 6488064, 131072),
        ("BPF-1", 6619136, 262144),
        ("BPF-DTB-1", 6881280, 458752),
        ("UBENV", 8224768, 32768),
        ("VER_b", 8257536, 32768),
        ("VER", 8323072, 32768),
    ])
}

/// The Nano SD (QSPI, 4 MiB) boot partitions of bup-format.md §3.2.
pub fn nano_spi_boot() -> Vec<BootPartition> {
    table(&[
        ("BCT", 0, 262144),
        ("NVC", 262144, 196608),
        ("PT", 458752, 65536),
        ("NVC_R", 524288, 196608),
        ("TBC", 720896, 131072),
        ("RP1", 851968, 327680),
        ("EBT", 1179648, 589824),
        ("WB0", 1769472, 65536),
        ("BPF", 1835008, 196608),
        ("BPF-DTB", 2031616, 65536),
        ("TOS", 2097152, 458752),
        ("DTB", 2555904, 327680),
        ("LNX", 2883584, 753664),
        ("EKS", 3637248, 65536),
        ("BMP", 3702784, 196608),
        ("RP4", 3899392, 131072),
        ("UBENV", 4030464, 32768),
        ("VER_b", 4063232, 32768),
        ("VER", 4128768, 32768),
    ])
}
