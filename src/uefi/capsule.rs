//! UEFI FMP capsules as NVIDIA builds them for T234 (`TEGRA_BL.Cap`,
//! `tegra-bl.cap`, `tegra-kernel.cap`): EDK2's `GenerateCapsule.py --encode`
//! around a BUP (docs: t234-boot-chain.md §2.2; UEFI 2.10 §23.3, EDK2
//! `FmpDevicePkg`). No cryptography: the signature is located and skipped by
//! its own length, and its bytes are never interpreted.
//!
//! ```text
//! 0            EFI_CAPSULE_HEADER: CapsuleGuid (FMP capsule GUID), HeaderSize,
//!              Flags, CapsuleImageSize (= the file), [reserved to HeaderSize]
//! HeaderSize   EFI_FIRMWARE_MANAGEMENT_CAPSULE_HEADER: Version 1,
//!              EmbeddedDriverCount, PayloadItemCount, ItemOffsetList[u64]
//!              (offsets from this header; drivers first, then payloads)
//! item         EFI_FIRMWARE_MANAGEMENT_CAPSULE_IMAGE_HEADER v1..v3:
//!              UpdateImageTypeId, UpdateImageIndex, UpdateImageSize,
//!              UpdateVendorCodeSize, [HardwareInstance], [ImageCapsuleSupport]
//! image        EFI_FIRMWARE_IMAGE_AUTHENTICATION: MonotonicCount +
//!              WIN_CERTIFICATE_UEFI_GUID (dwLength, 0x0200, 0x0EF1, PKCS7 GUID, cert)
//!              [EFI_FIRMWARE_IMAGE_DEP, only with the dependency bit]
//!              FMP_PAYLOAD_HEADER "MSS1": HeaderSize, FwVersion, LowestSupportedVersion
//!              the BUP, to the end of UpdateImageSize
//!              [vendor code, UpdateVendorCodeSize bytes]
//! ```
//!
//! Every length is checked against the file and against the structure that
//! contains it, in 64 bits, before anything is read at the offset it gives;
//! only the headers are read, so memory stays bounded whatever a file claims.
//! The result says where the BUP is ([`Capsule::payload`]) so
//! [`crate::bup::payload::Payload`] can parse it through a [`Window`].
//!
//! [`Builder`] writes capsules laid out as `GenerateCapsule.py` lays them out,
//! for unit tests and fuzz seeds that must not need Python; the integration
//! tests also parse capsules made by EDK2's own tool.

#![deny(clippy::indexing_slicing)]

use crate::guid::Guid;
use serde::Serialize;
use std::io::{self, Read, Seek, SeekFrom};
use std::ops::Range;

/// `EFI_FIRMWARE_MANAGEMENT_CAPSULE_ID_GUID`: the capsule carries FMP images.
pub const FMP_CAPSULE_GUID: Guid = Guid::from_fields(
    0x6DCB_D5ED,
    0xE82D,
    0x4C44,
    [0xBD, 0xA1, 0x71, 0x94, 0x19, 0x9A, 0xD9, 0x2A],
);
/// `EFI_CERT_TYPE_PKCS7_GUID`: the certificate is a DER PKCS #7 SignedData.
pub const PKCS7_CERT_GUID: Guid = Guid::from_fields(
    0x4AAF_D29D,
    0x68DF,
    0x49EE,
    [0x8A, 0xA9, 0x34, 0x7D, 0x37, 0x56, 0x65, 0xA7],
);
/// Bytes of `EFI_CAPSULE_HEADER` as the UEFI specification defines it
/// (`GenerateCapsule.py` pads it to 32; `HeaderSize` says which).
pub const CAPSULE_HEADER_LEN: u32 = 28;
/// `HeaderSize` that `GenerateCapsule.py` writes (28 + a reserved `u32`).
pub const GENERATE_CAPSULE_HEADER_SIZE: u32 = 32;
/// `EFI_FIRMWARE_MANAGEMENT_CAPSULE_HEADER_INIT_VERSION`.
pub const FMP_HEADER_VERSION: u32 = 1;
/// Fixed part of `EFI_FIRMWARE_MANAGEMENT_CAPSULE_HEADER` (before the offsets).
pub const FMP_HEADER_LEN: u64 = 8;
/// Most drivers plus payloads we read offsets for. A Tegra capsule has one
/// payload and no driver; the cap bounds what a claimed count can cost.
pub const MAX_ITEMS: u32 = 64;
/// `EFI_FIRMWARE_MANAGEMENT_CAPSULE_IMAGE_HEADER_INIT_VERSION`, the newest.
pub const IMAGE_HEADER_VERSION: u32 = 3;
/// `ImageCapsuleSupport` bit: the image starts with an authentication header.
pub const CAPSULE_SUPPORT_AUTHENTICATION: u64 = 1;
/// `ImageCapsuleSupport` bit: a dependency expression follows the authentication.
pub const CAPSULE_SUPPORT_DEPENDENCY: u64 = 2;
/// `WIN_CERT_REVISION`.
pub const WIN_CERT_REVISION: u16 = 0x0200;
/// `WIN_CERT_TYPE_EFI_GUID`.
pub const WIN_CERT_TYPE_EFI_GUID: u16 = 0x0EF1;
/// `WIN_CERTIFICATE_UEFI_GUID` without its certificate: dwLength, wRevision,
/// wCertificateType (8) and CertType (16). `dwLength` counts these too.
pub const WIN_CERT_UEFI_GUID_LEN: u32 = 24;
/// `FMP_PAYLOAD_HEADER` signature, `SIGNATURE_32('M','S','S','1')`.
pub const FMP_PAYLOAD_SIGNATURE: [u8; 4] = *b"MSS1";
/// `FMP_PAYLOAD_HEADER`: Signature, HeaderSize, FwVersion, LowestSupportedVersion.
pub const FMP_PAYLOAD_HEADER_LEN: u32 = 16;
/// Longest dependency expression we walk (real ones are tens of bytes).
pub const MAX_DEPEX_LEN: u64 = 4096;

/// Bytes of the image header for a header version (v1 has no
/// HardwareInstance, v2 no ImageCapsuleSupport).
pub fn image_header_len(version: u32) -> Option<u64> {
    match version {
        1 => Some(32),
        2 => Some(40),
        3 => Some(48),
        _ => None,
    }
}

/// `EFI_CAPSULE_HEADER`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CapsuleHeader {
    /// `CapsuleGuid` (the FMP capsule GUID).
    pub guid: Guid,
    /// Where the FMP capsule header starts.
    pub header_size: u32,
    /// `Flags` (`CAPSULE_FLAGS_*` in the high half, OEM flags in the low).
    pub flags: u32,
    /// `CapsuleImageSize`: the whole capsule, headers included.
    pub image_size: u32,
}

/// `EFI_FIRMWARE_MANAGEMENT_CAPSULE_HEADER`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FmpHeader {
    /// `Version` (1).
    pub version: u32,
    /// Drivers embedded before the payloads (a Tegra capsule has none).
    pub embedded_driver_count: u16,
    /// Payload images (a Tegra capsule has one).
    pub payload_item_count: u16,
    /// `ItemOffsetList`, relative to this header.
    pub item_offsets: Vec<u64>,
}

/// `EFI_FIRMWARE_MANAGEMENT_CAPSULE_IMAGE_HEADER`, and where it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageHeader {
    /// Header version (1 to 3).
    pub version: u32,
    /// `UpdateImageTypeId`: the firmware this image is for.
    pub update_image_type_id: Guid,
    /// `UpdateImageIndex` (1-based).
    pub update_image_index: u8,
    /// `UpdateImageSize`: authentication, payload header and payload.
    pub update_image_size: u32,
    /// `UpdateVendorCodeSize`: bytes after the image.
    pub update_vendor_code_size: u32,
    /// `UpdateHardwareInstance` (v2+).
    pub update_hardware_instance: Option<u64>,
    /// `ImageCapsuleSupport` (v3).
    pub image_capsule_support: Option<u64>,
    /// Absolute offset of this header in the file.
    pub offset: u64,
}

/// `EFI_FIRMWARE_IMAGE_AUTHENTICATION`, certificate skipped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Authentication {
    /// `MonotonicCount` (signed together with the image).
    pub monotonic_count: u64,
    /// `AuthInfo.Hdr.dwLength`: the whole `WIN_CERTIFICATE_UEFI_GUID`.
    pub dw_length: u32,
    /// Bytes of PKCS #7 data (`dwLength` − 24).
    pub cert_data_len: u32,
}

/// `FMP_PAYLOAD_HEADER`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PayloadHeader {
    /// `HeaderSize` (16).
    pub header_size: u32,
    /// `FwVersion` of the firmware in the payload.
    pub fw_version: u32,
    /// `LowestSupportedVersion` the firmware records after applying it.
    pub lowest_supported_version: u32,
}

/// A parsed capsule: the headers, and where the payload (the BUP) is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Capsule {
    /// Size of the file.
    pub file_size: u64,
    /// `EFI_CAPSULE_HEADER`.
    pub header: CapsuleHeader,
    /// The FMP capsule header.
    pub fmp: FmpHeader,
    /// The one payload image.
    pub image: ImageHeader,
    /// Its authentication, when `ImageCapsuleSupport` says it has one.
    pub auth: Option<Authentication>,
    /// Bytes of its dependency expression, when it has one.
    pub depex_len: Option<u64>,
    /// `FMP_PAYLOAD_HEADER`.
    pub payload_header: PayloadHeader,
    /// Absolute byte range of the payload (the BUP) in the file.
    pub payload: Range<u64>,
}

impl Capsule {
    /// `UpdateImageTypeId` of the payload.
    pub fn image_type(&self) -> Guid {
        self.image.update_image_type_id
    }

    /// The payload's firmware version.
    pub fn fw_version(&self) -> super::version::FwVersion {
        super::version::FwVersion(self.payload_header.fw_version)
    }

    /// The lowest version the firmware will accept after this one.
    pub fn lowest_supported_version(&self) -> super::version::FwVersion {
        super::version::FwVersion(self.payload_header.lowest_supported_version)
    }

    /// The monotonic count, when the image is authenticated.
    pub fn monotonic_count(&self) -> Option<u64> {
        self.auth.as_ref().map(|a| a.monotonic_count)
    }

    /// Length of the payload.
    pub fn payload_len(&self) -> u64 {
        self.payload.end - self.payload.start
    }
}

/// Why a file is not a capsule we can use. One variant per rule.
#[derive(thiserror::Error)]
pub enum CapsuleError {
    /// Reading failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// Shorter than `EFI_CAPSULE_HEADER`.
    #[error("file of {0} bytes is shorter than the 28-byte EFI_CAPSULE_HEADER")]
    TooShort(u64),
    /// `CapsuleGuid` is not the FMP capsule GUID.
    #[error("CapsuleGuid {0} is not the FMP capsule GUID {FMP_CAPSULE_GUID}")]
    NotFmp(Guid),
    /// `HeaderSize` below 28 or beyond the capsule.
    #[error("EFI_CAPSULE_HEADER.HeaderSize {header_size} is outside 28..{image_size}")]
    HeaderSize {
        /// `HeaderSize`.
        header_size: u32,
        /// `CapsuleImageSize`.
        image_size: u32,
    },
    /// `CapsuleImageSize` is not the size of the file (UEFI refuses it).
    #[error("EFI_CAPSULE_HEADER.CapsuleImageSize {claimed} is not the file size {file_size}")]
    CapsuleImageSize {
        /// `CapsuleImageSize`.
        claimed: u32,
        /// The file's size.
        file_size: u64,
    },
    /// The FMP capsule header does not fit.
    #[error("the FMP capsule header ({need} bytes) does not fit in the {have} bytes after EFI_CAPSULE_HEADER")]
    FmpHeaderTruncated {
        /// Bytes needed (fixed part and offsets).
        need: u64,
        /// Bytes there.
        have: u64,
    },
    /// FMP capsule header version other than 1.
    #[error("FMP capsule header version {0} (expected 1)")]
    FmpVersion(u32),
    /// More drivers and payloads than [`MAX_ITEMS`].
    #[error("{0} embedded drivers and payloads are more than the {MAX_ITEMS} this reader accepts")]
    TooManyItems(u32),
    /// Not exactly one payload (a Tegra capsule carries one image).
    #[error("the capsule has {0} payload images; a Tegra capsule has exactly one")]
    PayloadCount(u16),
    /// An item offset points into the headers, past the end, or backwards.
    #[error("ItemOffsetList[{index}] = {offset} is not inside the FMP capsule (after {min}, before {max}, increasing)")]
    ItemOffset {
        /// Index in the list.
        index: usize,
        /// The offset.
        offset: u64,
        /// Smallest allowed.
        min: u64,
        /// End of the FMP capsule.
        max: u64,
    },
    /// Image header version not 1, 2 or 3.
    #[error("FMP image header version {0} (1 to 3 are defined)")]
    ImageHeaderVersion(u32),
    /// The image item is shorter than its header.
    #[error("the payload item has {have} bytes, less than its {need}-byte image header")]
    ImageHeaderTruncated {
        /// Header bytes.
        need: u64,
        /// Item bytes.
        have: u64,
    },
    /// `UpdateImageIndex` 0 (image indexes start at 1).
    #[error("UpdateImageIndex 0 (FMP image indexes start at 1)")]
    ImageIndex,
    /// Header + image + vendor code is not the item's size.
    #[error(
        "image header {header} + UpdateImageSize {image} + UpdateVendorCodeSize {vendor} bytes \
         is not the payload item's {item} bytes"
    )]
    ItemSize {
        /// Header bytes.
        header: u64,
        /// `UpdateImageSize`.
        image: u32,
        /// `UpdateVendorCodeSize`.
        vendor: u32,
        /// Item bytes.
        item: u64,
    },
    /// The authentication header does not fit in the image.
    #[error("EFI_FIRMWARE_IMAGE_AUTHENTICATION (8 + dwLength {dw_length} bytes) does not fit in UpdateImageSize {image}")]
    AuthTruncated {
        /// `dwLength` (0 when even the fixed part is missing).
        dw_length: u32,
        /// `UpdateImageSize`.
        image: u32,
    },
    /// `dwLength` smaller than the certificate header.
    #[error(
        "WIN_CERTIFICATE dwLength {0} is less than the 24-byte WIN_CERTIFICATE_UEFI_GUID header"
    )]
    AuthLength(u32),
    /// `wRevision` is not 0x0200.
    #[error("WIN_CERTIFICATE wRevision {0:#06x} (expected 0x0200)")]
    AuthRevision(u16),
    /// `wCertificateType` is not `WIN_CERT_TYPE_EFI_GUID`.
    #[error("WIN_CERTIFICATE wCertificateType {0:#06x} (expected 0x0ef1, WIN_CERT_TYPE_EFI_GUID)")]
    AuthType(u16),
    /// `CertType` is not PKCS #7.
    #[error("WIN_CERTIFICATE_UEFI_GUID CertType {0} is not PKCS7 ({PKCS7_CERT_GUID})")]
    AuthCertType(Guid),
    /// The dependency expression has no end inside the image.
    #[error("dependency expression: {0}")]
    Depex(String),
    /// No room for `FMP_PAYLOAD_HEADER`.
    #[error("FMP_PAYLOAD_HEADER does not fit: {have} bytes left in the image")]
    PayloadHeaderTruncated {
        /// Bytes left.
        have: u64,
    },
    /// The payload header signature is not `MSS1`.
    #[error("FMP_PAYLOAD_HEADER signature '{0}' (expected MSS1)")]
    PayloadSignature(String),
    /// Payload `HeaderSize` below 16 or past the image.
    #[error("FMP_PAYLOAD_HEADER HeaderSize {header_size} is outside 16..{max}")]
    PayloadHeaderSize {
        /// `HeaderSize`.
        header_size: u32,
        /// Bytes left in the image.
        max: u64,
    },
}

// Debug as Display: these errors reach anyhow, whose vtable links Debug; a
// derived Debug of every variant costs kilobytes of the 3 MiB budget.
impl std::fmt::Debug for CapsuleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// Zero when `b` is too short: the callers rely on that fallback.
fn u16_at(b: &[u8], off: usize) -> u16 {
    crate::bytes::le16(b, off).unwrap_or(0)
}

/// Zero when `b` is too short: the callers rely on that fallback.
fn u32_at(b: &[u8], off: usize) -> u32 {
    crate::bytes::le32(b, off).unwrap_or(0)
}

/// Zero when `b` is too short: the callers rely on that fallback.
fn u64_at(b: &[u8], off: usize) -> u64 {
    crate::bytes::le64(b, off).unwrap_or(0)
}

fn guid_at(b: &[u8], off: usize) -> Guid {
    let mut w = [0u8; 16];
    if let Some(s) = b.get(off..off + 16) {
        w.copy_from_slice(s);
    }
    Guid::from_gpt_bytes(w)
}

/// Reads `len` bytes at `offset`. Callers have checked that the range is in
/// the file and `len` is one of the small fixed header sizes.
fn read_at<R: Read + Seek>(r: &mut R, offset: u64, len: u64) -> io::Result<Vec<u8>> {
    r.seek(SeekFrom::Start(offset))?;
    let mut b = Vec::new();
    r.take(len).read_to_end(&mut b)?;
    if (b.len() as u64) < len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("reading {len} bytes at offset {offset}: the file ended"),
        ));
    }
    Ok(b)
}

/// `EFI_FMP_DEP_*` opcodes (UEFI 2.10 §23.4): operand sizes for walking an
/// expression to its end without evaluating it.
mod depex {
    pub const PUSH_GUID: u8 = 0x00;
    pub const PUSH_VERSION: u8 = 0x01;
    pub const VERSION_STR: u8 = 0x02;
    pub const END: u8 = 0x0D;
    pub const DECLARE_LENGTH: u8 = 0x0E;
    /// AND .. LTE, TRUE, FALSE: no operand.
    pub const NO_OPERAND: std::ops::RangeInclusive<u8> = 0x03..=0x0C;
}

/// The length of a dependency expression: opcodes up to and including
/// `END`, inside `bytes`.
fn depex_len(bytes: &[u8]) -> Result<u64, CapsuleError> {
    let mut i = 0usize;
    loop {
        let Some(&op) = bytes.get(i) else {
            return Err(CapsuleError::Depex(format!(
                "no END opcode in its first {} bytes",
                bytes.len()
            )));
        };
        i += 1;
        match op {
            depex::END => return Ok(i as u64),
            depex::PUSH_GUID => i += 16,
            depex::PUSH_VERSION | depex::DECLARE_LENGTH => i += 4,
            depex::VERSION_STR => {
                let rest = bytes.get(i..).unwrap_or(&[]);
                match rest.iter().position(|&b| b == 0) {
                    Some(nul) => i += nul + 1,
                    None => {
                        return Err(CapsuleError::Depex(
                            "a version string without its terminating NUL".into(),
                        ))
                    }
                }
            }
            o if depex::NO_OPERAND.contains(&o) => {}
            o => {
                return Err(CapsuleError::Depex(format!(
                    "unknown opcode {o:#04x} at byte {}",
                    i - 1
                )))
            }
        }
    }
}

impl Capsule {
    /// Reads and checks the headers of a capsule from the start of `r`. The
    /// payload is not read.
    pub fn parse<R: Read + Seek>(r: &mut R) -> Result<Capsule, CapsuleError> {
        let file_size = r.seek(SeekFrom::End(0))?;
        if file_size < u64::from(CAPSULE_HEADER_LEN) {
            return Err(CapsuleError::TooShort(file_size));
        }
        let h = read_at(r, 0, u64::from(CAPSULE_HEADER_LEN))?;
        let header = CapsuleHeader {
            guid: guid_at(&h, 0),
            header_size: u32_at(&h, 16),
            flags: u32_at(&h, 20),
            image_size: u32_at(&h, 24),
        };
        if header.guid != FMP_CAPSULE_GUID {
            return Err(CapsuleError::NotFmp(header.guid));
        }
        if u64::from(header.image_size) != file_size {
            return Err(CapsuleError::CapsuleImageSize {
                claimed: header.image_size,
                file_size,
            });
        }
        if header.header_size < CAPSULE_HEADER_LEN || header.header_size >= header.image_size {
            return Err(CapsuleError::HeaderSize {
                header_size: header.header_size,
                image_size: header.image_size,
            });
        }

        // The FMP capsule: from HeaderSize to the end of the capsule.
        let base = u64::from(header.header_size);
        let fmp_len = file_size - base;
        if fmp_len < FMP_HEADER_LEN {
            return Err(CapsuleError::FmpHeaderTruncated {
                need: FMP_HEADER_LEN,
                have: fmp_len,
            });
        }
        let f = read_at(r, base, FMP_HEADER_LEN)?;
        let version = u32_at(&f, 0);
        let drivers = u16_at(&f, 4);
        let payloads = u16_at(&f, 6);
        if version != FMP_HEADER_VERSION {
            return Err(CapsuleError::FmpVersion(version));
        }
        let items = u32::from(drivers) + u32::from(payloads);
        if items > MAX_ITEMS {
            return Err(CapsuleError::TooManyItems(items));
        }
        if payloads != 1 {
            return Err(CapsuleError::PayloadCount(payloads));
        }
        let list_end = FMP_HEADER_LEN + 8 * u64::from(items);
        if list_end > fmp_len {
            return Err(CapsuleError::FmpHeaderTruncated {
                need: list_end,
                have: fmp_len,
            });
        }
        let list = read_at(r, base + FMP_HEADER_LEN, 8 * u64::from(items))?;
        let item_offsets: Vec<u64> = (0..items as usize).map(|i| u64_at(&list, 8 * i)).collect();
        let mut min = list_end;
        for (index, &offset) in item_offsets.iter().enumerate() {
            if offset < min || offset >= fmp_len {
                return Err(CapsuleError::ItemOffset {
                    index,
                    offset,
                    min,
                    max: fmp_len,
                });
            }
            min = offset + 1;
        }
        let fmp = FmpHeader {
            version,
            embedded_driver_count: drivers,
            payload_item_count: payloads,
            item_offsets,
        };

        // The payload is the last item; it runs to the end of the capsule.
        let item_start = fmp.item_offsets.last().copied().unwrap_or(fmp_len);
        let item_len = fmp_len - item_start;
        let image_at = base + item_start;
        let probe = read_at(r, image_at, 4.min(item_len))?;
        let image_version = u32_at(&probe, 0);
        let hlen = image_header_len(image_version)
            .ok_or(CapsuleError::ImageHeaderVersion(image_version))?;
        if item_len < hlen {
            return Err(CapsuleError::ImageHeaderTruncated {
                need: hlen,
                have: item_len,
            });
        }
        let ih = read_at(r, image_at, hlen)?;
        let image = ImageHeader {
            version: image_version,
            update_image_type_id: guid_at(&ih, 4),
            update_image_index: ih.get(20).copied().unwrap_or(0),
            update_image_size: u32_at(&ih, 24),
            update_vendor_code_size: u32_at(&ih, 28),
            update_hardware_instance: (image_version >= 2).then(|| u64_at(&ih, 32)),
            image_capsule_support: (image_version >= 3).then(|| u64_at(&ih, 40)),
            offset: image_at,
        };
        if image.update_image_index == 0 {
            return Err(CapsuleError::ImageIndex);
        }
        if hlen + u64::from(image.update_image_size) + u64::from(image.update_vendor_code_size)
            != item_len
        {
            return Err(CapsuleError::ItemSize {
                header: hlen,
                image: image.update_image_size,
                vendor: image.update_vendor_code_size,
                item: item_len,
            });
        }

        // Inside the image: [authentication] [dependency] payload header, payload.
        let image_start = image_at + hlen;
        let image_end = image_start + u64::from(image.update_image_size);
        let mut at = image_start;
        // Before v3 there is no flag, and FmpDxe expects authentication.
        let support = image
            .image_capsule_support
            .unwrap_or(CAPSULE_SUPPORT_AUTHENTICATION);
        let auth = if support & CAPSULE_SUPPORT_AUTHENTICATION != 0 {
            let fixed = 8 + u64::from(WIN_CERT_UEFI_GUID_LEN);
            if image_end - at < fixed {
                return Err(CapsuleError::AuthTruncated {
                    dw_length: 0,
                    image: image.update_image_size,
                });
            }
            let a = read_at(r, at, fixed)?;
            let dw_length = u32_at(&a, 8);
            if dw_length < WIN_CERT_UEFI_GUID_LEN {
                return Err(CapsuleError::AuthLength(dw_length));
            }
            if 8 + u64::from(dw_length) > image_end - at {
                return Err(CapsuleError::AuthTruncated {
                    dw_length,
                    image: image.update_image_size,
                });
            }
            let revision = u16_at(&a, 12);
            if revision != WIN_CERT_REVISION {
                return Err(CapsuleError::AuthRevision(revision));
            }
            let kind = u16_at(&a, 14);
            if kind != WIN_CERT_TYPE_EFI_GUID {
                return Err(CapsuleError::AuthType(kind));
            }
            let cert_type = guid_at(&a, 16);
            if cert_type != PKCS7_CERT_GUID {
                return Err(CapsuleError::AuthCertType(cert_type));
            }
            at += 8 + u64::from(dw_length);
            Some(Authentication {
                monotonic_count: u64_at(&a, 0),
                dw_length,
                cert_data_len: dw_length - WIN_CERT_UEFI_GUID_LEN,
            })
        } else {
            None
        };
        let depex_len = if support & CAPSULE_SUPPORT_DEPENDENCY != 0 {
            let window = (image_end - at).min(MAX_DEPEX_LEN);
            let d = read_at(r, at, window)?;
            let n = depex_len(&d)?;
            at += n;
            Some(n)
        } else {
            None
        };

        let left = image_end - at;
        if left < u64::from(FMP_PAYLOAD_HEADER_LEN) {
            return Err(CapsuleError::PayloadHeaderTruncated { have: left });
        }
        let p = read_at(r, at, u64::from(FMP_PAYLOAD_HEADER_LEN))?;
        if p.get(..4) != Some(&FMP_PAYLOAD_SIGNATURE[..]) {
            return Err(CapsuleError::PayloadSignature(
                p.get(..4).unwrap_or(&[]).escape_ascii().to_string(),
            ));
        }
        let payload_header = PayloadHeader {
            header_size: u32_at(&p, 4),
            fw_version: u32_at(&p, 8),
            lowest_supported_version: u32_at(&p, 12),
        };
        if payload_header.header_size < FMP_PAYLOAD_HEADER_LEN
            || u64::from(payload_header.header_size) > left
        {
            return Err(CapsuleError::PayloadHeaderSize {
                header_size: payload_header.header_size,
                max: left,
            });
        }
        let payload = at + u64::from(payload_header.header_size)..image_end;
        Ok(Capsule {
            file_size,
            header,
            fmp,
            image,
            auth,
            depex_len,
            payload_header,
            payload,
        })
    }

    /// Parses a capsule held in memory.
    pub fn parse_bytes(bytes: &[u8]) -> Result<Capsule, CapsuleError> {
        Capsule::parse(&mut io::Cursor::new(bytes))
    }
}

/// What a file starts with, for commands that take a payload or a capsule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// An FMP capsule (its first 16 bytes are the FMP capsule GUID).
    Capsule,
    /// A BUP (`NVIDIA__BLOB__V*`).
    Payload,
    /// Neither.
    Other,
}

/// Tells a capsule from a BUP by the first 16 bytes.
pub fn detect(head: &[u8]) -> FileKind {
    let first: Option<[u8; 16]> = head.get(..16).and_then(|h| h.try_into().ok());
    match first {
        Some(g) if Guid::from_gpt_bytes(g) == FMP_CAPSULE_GUID => FileKind::Capsule,
        Some(g) if g.starts_with(b"NVIDIA__BLOB__V") => FileKind::Payload,
        _ => FileKind::Other,
    }
}

/// A read-only window `[start, end)` of another reader, seen as a whole
/// file: how a BUP inside a capsule is parsed (its offsets count from the
/// BUP's first byte).
#[derive(Debug)]
pub struct Window<R> {
    inner: R,
    start: u64,
    len: u64,
    pos: u64,
}

impl<R: Read + Seek> Window<R> {
    /// The bytes `range` of `inner`.
    pub fn new(inner: R, range: Range<u64>) -> Window<R> {
        Window {
            inner,
            start: range.start,
            len: range.end.saturating_sub(range.start),
            pos: 0,
        }
    }

    /// The reader underneath.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: Read + Seek> Read for Window<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.len.saturating_sub(self.pos);
        if left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let n = (buf.len() as u64).min(left) as usize;
        self.inner.seek(SeekFrom::Start(self.start + self.pos))?;
        let got = self.inner.read(buf.get_mut(..n).unwrap_or(&mut []))?;
        self.pos += got as u64;
        Ok(got)
    }
}

impl<R: Read + Seek> Seek for Window<R> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(o) => Some(o),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        match target {
            Some(t) => {
                self.pos = t;
                Ok(t)
            }
            None => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "seeking before the start of the window",
            )),
        }
    }
}

/// Writes capsules laid out as `GenerateCapsule.py --encode` writes them, for
/// tests and fuzz seeds. The "certificate" is whatever bytes are given: it
/// is never verified, only skipped.
#[derive(Debug, Clone)]
pub struct Builder {
    /// `UpdateImageTypeId`.
    pub image_type: Guid,
    /// `FwVersion`.
    pub fw_version: u32,
    /// `LowestSupportedVersion`.
    pub lsv: u32,
    /// `MonotonicCount`.
    pub monotonic_count: u64,
    /// Certificate bytes; `None` builds an unsigned capsule (no
    /// authentication header, its support bit clear).
    pub cert: Option<Vec<u8>>,
    /// A dependency expression to put before the payload header.
    pub depex: Option<Vec<u8>>,
    /// `EFI_CAPSULE_HEADER.HeaderSize` (32 as `GenerateCapsule.py` writes).
    pub header_size: u32,
    /// `EFI_CAPSULE_HEADER.Flags`.
    pub flags: u32,
    /// `UpdateImageIndex`.
    pub image_index: u8,
    /// `UpdateHardwareInstance`.
    pub hardware_instance: u64,
    /// Embedded drivers (their bytes, placed before the payload).
    pub drivers: Vec<Vec<u8>>,
    /// Vendor code after the image.
    pub vendor_code: Vec<u8>,
}

impl Builder {
    /// A signed-looking capsule for `image_type` at `fw_version`, LSV equal
    /// to it (meta-tegra's default), monotonic count 1 (meta-tegra's).
    pub fn new(image_type: Guid, fw_version: u32) -> Builder {
        Builder {
            image_type,
            fw_version,
            lsv: fw_version,
            monotonic_count: 1,
            cert: Some(b"not a real PKCS7 signature".to_vec()),
            depex: None,
            header_size: GENERATE_CAPSULE_HEADER_SIZE,
            flags: 0,
            image_index: 1,
            hardware_instance: 0,
            drivers: Vec::new(),
            vendor_code: Vec::new(),
        }
    }

    /// The capsule bytes around `payload`.
    pub fn build(&self, payload: &[u8]) -> Vec<u8> {
        let mut image = Vec::new();
        let mut support = 0u64;
        if let Some(cert) = &self.cert {
            support |= CAPSULE_SUPPORT_AUTHENTICATION;
            image.extend_from_slice(&self.monotonic_count.to_le_bytes());
            image.extend_from_slice(&(WIN_CERT_UEFI_GUID_LEN + cert.len() as u32).to_le_bytes());
            image.extend_from_slice(&WIN_CERT_REVISION.to_le_bytes());
            image.extend_from_slice(&WIN_CERT_TYPE_EFI_GUID.to_le_bytes());
            image.extend_from_slice(&PKCS7_CERT_GUID.to_gpt_bytes());
            image.extend_from_slice(cert);
        }
        if let Some(d) = &self.depex {
            support |= CAPSULE_SUPPORT_DEPENDENCY;
            image.extend_from_slice(d);
        }
        image.extend_from_slice(&FMP_PAYLOAD_SIGNATURE);
        image.extend_from_slice(&FMP_PAYLOAD_HEADER_LEN.to_le_bytes());
        image.extend_from_slice(&self.fw_version.to_le_bytes());
        image.extend_from_slice(&self.lsv.to_le_bytes());
        image.extend_from_slice(payload);

        let mut item = Vec::new();
        item.extend_from_slice(&IMAGE_HEADER_VERSION.to_le_bytes());
        item.extend_from_slice(&self.image_type.to_gpt_bytes());
        item.extend_from_slice(&[self.image_index, 0, 0, 0]);
        item.extend_from_slice(&(image.len() as u32).to_le_bytes());
        item.extend_from_slice(&(self.vendor_code.len() as u32).to_le_bytes());
        item.extend_from_slice(&self.hardware_instance.to_le_bytes());
        item.extend_from_slice(&support.to_le_bytes());
        item.extend_from_slice(&image);
        item.extend_from_slice(&self.vendor_code);

        let items = self.drivers.len() + 1;
        let mut fmp = Vec::new();
        fmp.extend_from_slice(&FMP_HEADER_VERSION.to_le_bytes());
        fmp.extend_from_slice(&(self.drivers.len() as u16).to_le_bytes());
        fmp.extend_from_slice(&1u16.to_le_bytes());
        let mut offset = FMP_HEADER_LEN + 8 * items as u64;
        for d in &self.drivers {
            fmp.extend_from_slice(&offset.to_le_bytes());
            offset += d.len() as u64;
        }
        fmp.extend_from_slice(&offset.to_le_bytes());
        for d in &self.drivers {
            fmp.extend_from_slice(d);
        }
        fmp.extend_from_slice(&item);

        let total = self.header_size as usize + fmp.len();
        let mut out = Vec::with_capacity(total);
        out.extend_from_slice(&FMP_CAPSULE_GUID.to_gpt_bytes());
        out.extend_from_slice(&self.header_size.to_le_bytes());
        out.extend_from_slice(&self.flags.to_le_bytes());
        out.extend_from_slice(&(total as u32).to_le_bytes());
        out.resize(self.header_size as usize, 0);
        out.extend_from_slice(&fmp);
        out
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::uefi::vars::TEGRA_FMP_IMAGE_TYPE;

    const BUP: &[u8] = b"NVIDIA__BLOB__V3 and the rest of a payload";

    fn built(b: &Builder) -> (Vec<u8>, Capsule) {
        let bytes = b.build(BUP);
        let c = Capsule::parse_bytes(&bytes).unwrap();
        (bytes, c)
    }

    #[test]
    fn a_generated_layout_parses_to_its_fields() {
        let mut b = Builder::new(TEGRA_FMP_IMAGE_TYPE, 0x0024_0403);
        b.lsv = 0x0024_0000;
        b.monotonic_count = 7;
        let (bytes, c) = built(&b);
        assert_eq!(c.header.guid, FMP_CAPSULE_GUID);
        assert_eq!(c.header.header_size, 32);
        assert_eq!(u64::from(c.header.image_size), bytes.len() as u64);
        assert_eq!(c.fmp.item_offsets, [16]);
        assert_eq!(c.image.version, 3);
        assert_eq!(c.image_type(), TEGRA_FMP_IMAGE_TYPE);
        assert_eq!(c.image.update_image_index, 1);
        assert_eq!(c.image.offset, 48);
        assert_eq!(c.monotonic_count(), Some(7));
        assert_eq!(c.auth.as_ref().unwrap().cert_data_len, 26);
        assert_eq!(c.fw_version().to_string(), "36.4.3");
        assert_eq!(c.lowest_supported_version().to_string(), "36.0.0");
        // The BUP sits verbatim at the end of the file (t234-boot-chain.md §2.2).
        assert_eq!(c.payload.end, bytes.len() as u64);
        assert_eq!(&bytes[c.payload.start as usize..], BUP);
        // The GUID is stored mixed-endian, as every EFI_GUID.
        assert_eq!(&bytes[..4], &[0xED, 0xD5, 0xCB, 0x6D]);
        assert_eq!(detect(&bytes), FileKind::Capsule);
        assert_eq!(detect(BUP), FileKind::Payload);
        assert_eq!(detect(b"short"), FileKind::Other);
    }

    #[test]
    fn unsigned_drivers_depex_and_vendor_code_are_located() {
        let mut b = Builder::new(TEGRA_FMP_IMAGE_TYPE, 1);
        b.cert = None;
        b.drivers = vec![vec![0xAA; 10], vec![0xBB; 3]];
        // PUSH_GUID g, PUSH_VERSION 5, VERSION_STR "x", GTE, END
        let mut d = vec![0x00];
        d.extend_from_slice(&[7; 16]);
        d.extend_from_slice(&[0x01, 5, 0, 0, 0, 0x02, b'x', 0, 0x0A, 0x0D]);
        b.depex = Some(d.clone());
        b.vendor_code = b"VENDOR".to_vec();
        let (bytes, c) = built(&b);
        assert!(c.auth.is_none());
        assert_eq!(c.monotonic_count(), None);
        assert_eq!(c.depex_len, Some(d.len() as u64));
        assert_eq!(c.fmp.embedded_driver_count, 2);
        assert_eq!(
            &bytes[c.payload.start as usize..c.payload.end as usize],
            BUP
        );
        assert_eq!(&bytes[c.payload.end as usize..], b"VENDOR");
    }

    fn err(bytes: &[u8]) -> String {
        Capsule::parse_bytes(bytes).unwrap_err().to_string()
    }

    fn put32(b: &mut [u8], off: usize, v: u32) {
        b[off..off + 4].copy_from_slice(&v.to_le_bytes());
    }

    #[test]
    fn each_rule_has_its_message() {
        let good = Builder::new(TEGRA_FMP_IMAGE_TYPE, 1).build(BUP);
        let len = good.len() as u32;
        // Offsets in `good`: capsule header 0, FMP header 32, item 48,
        // auth 96 (dwLength at 104), payload header 96 + 8 + 50 = 154.
        assert!(err(&good[..20]).starts_with("file of 20 bytes"));

        let mut b = good.clone();
        b[0] ^= 1;
        assert!(err(&b).starts_with("CapsuleGuid 6DCBD5EC"), "{}", err(&b));

        let mut b = good.clone();
        b.push(0);
        assert!(err(&b).contains(&format!(
            "CapsuleImageSize {len} is not the file size {}",
            len + 1
        )));

        for hs in [27, len] {
            let mut b = good.clone();
            put32(&mut b, 16, hs);
            assert!(err(&b).contains("HeaderSize"), "{}", err(&b));
        }

        let mut b = good.clone();
        put32(&mut b, 32, 2);
        assert_eq!(err(&b), "FMP capsule header version 2 (expected 1)");

        let mut b = good.clone();
        b[38] = 2;
        assert!(err(&b).starts_with("the capsule has 2 payload images"));
        b[38] = 0;
        assert!(err(&b).starts_with("the capsule has 0 payload images"));

        let mut b = good.clone();
        b[36..38].copy_from_slice(&100u16.to_le_bytes());
        assert!(err(&b).contains("more than the 64"));

        let mut b = good.clone();
        b[40..48].copy_from_slice(&8u64.to_le_bytes());
        assert!(err(&b).starts_with("ItemOffsetList[0] = 8"), "{}", err(&b));
        b[40..48].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(err(&b).starts_with("ItemOffsetList[0]"));

        let mut b = good.clone();
        put32(&mut b, 48, 4);
        assert_eq!(err(&b), "FMP image header version 4 (1 to 3 are defined)");

        let mut b = good.clone();
        b[68] = 0;
        assert!(err(&b).starts_with("UpdateImageIndex 0"));

        let mut b = good.clone();
        put32(&mut b, 72, u32::MAX);
        assert!(err(&b).contains("is not the payload item's"), "{}", err(&b));

        // dwLength too small, too large, then the wrong revision, type, GUID.
        let mut b = good.clone();
        put32(&mut b, 104, 23);
        assert!(err(&b).starts_with("WIN_CERTIFICATE dwLength 23"));
        put32(&mut b, 104, 0xFFFF_0000);
        assert!(
            err(&b).starts_with("EFI_FIRMWARE_IMAGE_AUTHENTICATION"),
            "{}",
            err(&b)
        );
        let mut b = good.clone();
        b[109] = 0;
        assert!(err(&b).starts_with("WIN_CERTIFICATE wRevision"));
        let mut b = good.clone();
        b[110] = 0;
        assert!(err(&b).starts_with("WIN_CERTIFICATE wCertificateType"));
        let mut b = good.clone();
        b[112] ^= 0xFF;
        assert!(err(&b).contains("is not PKCS7"));

        let mut b = good.clone();
        b[154] = b'X';
        assert_eq!(
            err(&b),
            "FMP_PAYLOAD_HEADER signature 'XSS1' (expected MSS1)"
        );
        let mut b = good.clone();
        put32(&mut b, 158, 15);
        assert!(err(&b).starts_with("FMP_PAYLOAD_HEADER HeaderSize 15"));
        put32(&mut b, 158, 10_000);
        assert!(err(&b).starts_with("FMP_PAYLOAD_HEADER HeaderSize 10000"));

        // A dependency expression that never ends.
        let mut d = Builder::new(TEGRA_FMP_IMAGE_TYPE, 1);
        d.depex = Some(vec![0x06, 0x06]);
        let bytes = d.build(b"");
        assert!(
            err(&bytes).starts_with("dependency expression: unknown opcode 0x4d"),
            "{}",
            err(&bytes)
        );
        assert!(depex_len(&[0x02, b'a'])
            .unwrap_err()
            .to_string()
            .contains("NUL"));
        assert!(depex_len(&[0x00, 1, 2])
            .unwrap_err()
            .to_string()
            .contains("no END"));
        assert_eq!(depex_len(&[0x0E, 1, 2, 3, 4, 0x06, 0x0D, 0xFF]).unwrap(), 7);
        d.depex = Some(vec![0x0F]);
        assert!(err(&d.build(b"")).contains("unknown opcode 0x0f"));
    }

    #[test]
    fn version_1_and_2_headers_imply_authentication() {
        let good = Builder::new(TEGRA_FMP_IMAGE_TYPE, 1).build(BUP);
        // Rewrite the item as a v2 header: drop ImageCapsuleSupport (8 bytes).
        let mut b = good[..88].to_vec();
        b.extend_from_slice(&good[96..]);
        put32(&mut b, 48, 2);
        let len = b.len() as u32;
        put32(&mut b, 24, len);
        let c = Capsule::parse_bytes(&b).unwrap();
        assert_eq!(c.image.image_capsule_support, None);
        assert_eq!(c.image.update_hardware_instance, Some(0));
        assert_eq!(c.monotonic_count(), Some(1));
        assert_eq!(&b[c.payload.start as usize..], BUP);
    }

    #[test]
    fn a_window_is_a_file_of_its_own() {
        let bytes: Vec<u8> = (0u8..100).collect();
        let mut w = Window::new(io::Cursor::new(bytes), 10..30);
        assert_eq!(w.seek(SeekFrom::End(0)).unwrap(), 20);
        w.seek(SeekFrom::Start(18)).unwrap();
        let mut out = Vec::new();
        w.read_to_end(&mut out).unwrap();
        assert_eq!(out, [28, 29]);
        assert!(w.seek(SeekFrom::Current(-100)).is_err());
        w.seek(SeekFrom::Start(50)).unwrap();
        assert_eq!(w.read(&mut [0u8; 4]).unwrap(), 0);
    }

    #[test]
    fn a_bup_inside_a_capsule_parses_through_a_window() {
        use crate::bup::payload::{Builder as Bup, Payload, PayloadFormat};
        let mut p = Bup::new().entry("mb1", b"MB1!", 2, "");
        p.format = PayloadFormat::V3;
        p.version = 0x0103_0622;
        let bup = p.build();
        let cap = Builder::new(TEGRA_FMP_IMAGE_TYPE, 0x0024_0403).build(&bup);
        let c = Capsule::parse_bytes(&cap).unwrap();
        let mut w = Window::new(io::Cursor::new(&cap), c.payload.clone());
        let parsed = Payload::parse(&mut w).unwrap();
        assert_eq!(parsed.file_size, bup.len() as u64);
        assert_eq!(parsed.entries[0].name, b"mb1");
        let e = &parsed.entries[0];
        w.seek(SeekFrom::Start(u64::from(e.offset))).unwrap();
        let mut data = vec![0u8; e.length as usize];
        w.read_exact(&mut data).unwrap();
        assert_eq!(data, b"MB1!");
    }

    #[test]
    fn any_bytes_parse_or_fail_without_panicking() {
        use proptest::prelude::*;
        let mut b = Builder::new(TEGRA_FMP_IMAGE_TYPE, 1);
        b.depex = Some(vec![0x06, 0x0D]);
        let base = b.build(BUP);
        proptest!(|(cut in 0usize..260, flips in proptest::collection::vec((0usize..260, any::<u8>()), 0..8))| {
            let mut b = base.clone();
            for (i, v) in flips {
                if let Some(x) = b.get_mut(i) { *x = v; }
            }
            b.truncate(cut.max(1));
            if let Ok(c) = Capsule::parse_bytes(&b) {
                prop_assert!(c.payload.start <= c.payload.end);
                prop_assert!(c.payload.end <= b.len() as u64);
            }
        });
    }
}
