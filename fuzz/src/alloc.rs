//! A global allocator that turns an allocation of an input-claimed size into
//! a crash libFuzzer records.
//!
//! Without a sanitizer libFuzzer cannot see a single huge allocation: a
//! `vec![0; 4 << 30]` gets lazily-zeroed pages and never shows in the RSS
//! its `-rss_limit_mb` watches. Every allocation goes through here instead,
//! and one above [`MAX_ALLOCATION`] aborts with a message. No parser needs
//! more: the largest legitimate buffers are a GPT entry array (1 MiB at most)
//! and copies of the input itself.

use std::alloc::{GlobalAlloc, Layout, System};

/// Largest single allocation a target may make.
pub const MAX_ALLOCATION: usize = 64 << 20;

/// [`System`], with the size check.
pub struct Bounded;

fn refuse(size: usize) -> ! {
    // No allocation here: format into a stack buffer and write(2) it.
    let mut buf = *b"fuzz: allocation of 0000000000000000000000 bytes (input-claimed size?)\n";
    let mut n = size;
    let mut i = 41;
    loop {
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 || i == 20 {
            break;
        }
        i -= 1;
    }
    // SAFETY: writes a valid buffer of its own length to stderr.
    unsafe { libc_write(2, buf.as_ptr(), buf.len()) };
    std::process::abort()
}

extern "C" {
    #[link_name = "write"]
    fn libc_write(fd: i32, buf: *const u8, count: usize) -> isize;
}

// SAFETY: forwards to `System` unchanged, only refusing some sizes first.
unsafe impl GlobalAlloc for Bounded {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() > MAX_ALLOCATION {
            refuse(layout.size());
        }
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() > MAX_ALLOCATION {
            refuse(layout.size());
        }
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > MAX_ALLOCATION {
            refuse(new_size);
        }
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}
