//! A structural check of an ELF shared object before `dlopen` sees it.
//!
//! glibc's loader maps each `PT_LOAD` segment as its program header says,
//! without checking that the file is long enough: a truncated library maps
//! fine and then kills the process with SIGBUS when the loader touches the
//! missing pages. So before loading, the loader checks what the dynamic
//! loader will trust: the ELF identification, that it is a shared object of
//! this machine's class and byte order, and that the program header table
//! and every segment's file bytes lie inside the file.
//!
//! This catches truncated and corrupted files. It is no defence against a
//! hostile binary: that is what the SHA-256 pin is for.

use std::fmt;

/// What is wrong with the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ElfProblem {
    /// No ELF magic, or an unknown class, byte order or version.
    NotElf,
    /// 32-bit against a 64-bit host or the other way round, or the other
    /// byte order.
    OtherArchitecture,
    /// An executable or object file, not a shared object.
    NotSharedObject,
    /// A header, the program header table or a segment ends past the end of
    /// the file.
    Truncated,
}

impl fmt::Display for ElfProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ElfProblem::NotElf => "not an ELF file",
            ElfProblem::OtherArchitecture => {
                "an ELF file for another architecture (word size or byte order)"
            }
            ElfProblem::NotSharedObject => "an ELF file that is not a shared object (ET_DYN)",
            ElfProblem::Truncated => {
                "a truncated or corrupt ELF file: a header or segment ends past the end of the file"
            }
        })
    }
}

const PT_LOAD: u32 = 1;
const ET_DYN: u16 = 3;

struct Reader<'a> {
    bytes: &'a [u8],
    little: bool,
}

impl Reader<'_> {
    fn get<const N: usize>(&self, at: u64) -> Result<[u8; N], ElfProblem> {
        let at = usize::try_from(at).map_err(|_| ElfProblem::Truncated)?;
        let end = at.checked_add(N).ok_or(ElfProblem::Truncated)?;
        let slice = self.bytes.get(at..end).ok_or(ElfProblem::Truncated)?;
        Ok(slice.try_into().expect("N bytes"))
    }

    fn u16(&self, at: u64) -> Result<u16, ElfProblem> {
        let b = self.get::<2>(at)?;
        Ok(if self.little {
            u16::from_le_bytes(b)
        } else {
            u16::from_be_bytes(b)
        })
    }

    fn u32(&self, at: u64) -> Result<u32, ElfProblem> {
        let b = self.get::<4>(at)?;
        Ok(if self.little {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        })
    }

    fn u64(&self, at: u64) -> Result<u64, ElfProblem> {
        let b = self.get::<8>(at)?;
        Ok(if self.little {
            u64::from_le_bytes(b)
        } else {
            u64::from_be_bytes(b)
        })
    }

    /// A word of the file's class: 8 bytes in ELF64, 4 in ELF32.
    fn word(&self, wide: bool, at: u64) -> Result<u64, ElfProblem> {
        if wide {
            self.u64(at)
        } else {
            self.u32(at).map(u64::from)
        }
    }
}

/// Checks `bytes` as a shared object this process could map.
pub(crate) fn check(bytes: &[u8]) -> Result<(), ElfProblem> {
    if bytes.len() < 16 || &bytes[..4] != b"\x7fELF" || bytes[6] != 1 {
        return Err(ElfProblem::NotElf);
    }
    let wide = match bytes[4] {
        1 => false,
        2 => true,
        _ => return Err(ElfProblem::NotElf),
    };
    let little = match bytes[5] {
        1 => true,
        2 => false,
        _ => return Err(ElfProblem::NotElf),
    };
    if wide != (usize::BITS == 64) || little != cfg!(target_endian = "little") {
        return Err(ElfProblem::OtherArchitecture);
    }
    let r = Reader { bytes, little };
    let len = bytes.len() as u64;
    let (ehsize, phoff_at, ph_at, min_phent) = if wide {
        (64, 32, 54, 56)
    } else {
        (52, 28, 42, 32)
    };
    if len < ehsize {
        return Err(ElfProblem::Truncated);
    }
    if r.u16(16)? != ET_DYN {
        return Err(ElfProblem::NotSharedObject);
    }
    let phoff = r.word(wide, phoff_at)?;
    let phentsize = u64::from(r.u16(ph_at)?);
    let phnum = u64::from(r.u16(ph_at + 2)?);
    if phnum == 0 || phentsize < min_phent {
        return Err(ElfProblem::Truncated);
    }
    let table_end = phentsize
        .checked_mul(phnum)
        .and_then(|size| size.checked_add(phoff))
        .ok_or(ElfProblem::Truncated)?;
    if table_end > len {
        return Err(ElfProblem::Truncated);
    }
    // The section header table is not mapped, but a file cut short there
    // is just as corrupt.
    let (shoff_at, sh_at) = if wide { (40, 58) } else { (32, 46) };
    let shoff = r.word(wide, shoff_at)?;
    let shentsize = u64::from(r.u16(sh_at)?);
    let shnum = u64::from(r.u16(sh_at + 2)?);
    if shnum > 0 {
        let end = shentsize
            .checked_mul(shnum)
            .and_then(|size| size.checked_add(shoff))
            .ok_or(ElfProblem::Truncated)?;
        if end > len {
            return Err(ElfProblem::Truncated);
        }
    }
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        let (offset, filesz, memsz) = if wide {
            (r.u64(ph + 8)?, r.u64(ph + 32)?, r.u64(ph + 40)?)
        } else {
            (
                u64::from(r.u32(ph + 4)?),
                u64::from(r.u32(ph + 16)?),
                u64::from(r.u32(ph + 20)?),
            )
        };
        let end = offset.checked_add(filesz).ok_or(ElfProblem::Truncated)?;
        // Every segment's file bytes must exist; the loader reads the
        // dynamic section, notes and interpreter path through them too.
        if end > len || (r.u32(ph)? == PT_LOAD && filesz > memsz) {
            return Err(ElfProblem::Truncated);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The smallest ELF64 little-endian shared object header with one
    /// PT_LOAD segment of `filesz` bytes at offset 0.
    fn tiny(filesz: u64) -> Vec<u8> {
        let mut b = vec![0u8; 64 + 56];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2;
        b[5] = 1;
        b[6] = 1;
        b[16..18].copy_from_slice(&ET_DYN.to_le_bytes());
        b[32..40].copy_from_slice(&64u64.to_le_bytes());
        b[54..56].copy_from_slice(&56u16.to_le_bytes());
        b[56..58].copy_from_slice(&1u16.to_le_bytes());
        let ph = 64;
        b[ph..ph + 4].copy_from_slice(&PT_LOAD.to_le_bytes());
        b[ph + 32..ph + 40].copy_from_slice(&filesz.to_le_bytes());
        b[ph + 40..ph + 48].copy_from_slice(&filesz.to_le_bytes());
        b
    }

    #[test]
    #[cfg(all(target_pointer_width = "64", target_endian = "little"))]
    fn checks_headers_and_segments_against_the_file_length() {
        assert_eq!(check(&tiny(120)), Ok(()));
        assert_eq!(check(&tiny(121)), Err(ElfProblem::Truncated));
        assert_eq!(check(&tiny(u64::MAX)), Err(ElfProblem::Truncated));
        assert_eq!(check(&tiny(120)[..100]), Err(ElfProblem::Truncated));
        let mut exec = tiny(120);
        exec[16] = 2;
        assert_eq!(check(&exec), Err(ElfProblem::NotSharedObject));
        let mut narrow = tiny(120);
        narrow[4] = 1;
        assert_eq!(check(&narrow), Err(ElfProblem::OtherArchitecture));
        assert_eq!(check(b"#!/bin/sh\n"), Err(ElfProblem::NotElf));
        assert_eq!(check(b""), Err(ElfProblem::NotElf));
    }

    #[test]
    fn any_prefix_of_a_real_library_is_judged_without_panicking() {
        // This test binary's own dependencies include shared objects; use
        // libc's if it can be found, else skip.
        let Some(lib) = [
            "/lib/x86_64-linux-gnu/libc.so.6",
            "/lib/aarch64-linux-gnu/libc.so.6",
            "/usr/lib/libc.so.6",
        ]
        .iter()
        .find_map(|p| std::fs::read(p).ok()) else {
            return;
        };
        assert_eq!(check(&lib), Ok(()));
        for cut in [
            0,
            1,
            15,
            16,
            63,
            64,
            200,
            lib.len() / 3,
            lib.len() / 2,
            lib.len() - 1,
        ] {
            assert!(
                check(&lib[..cut]).is_err(),
                "a prefix of {cut} bytes passed"
            );
        }
    }
}
