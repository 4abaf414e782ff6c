//! Keeps the resident set small once the agent runs its steady loop.
//!
//! Configuration parsing, TLS set-up and the first samples touch most of
//! the program's code once; the kernel then keeps those pages mapped (it
//! maps 64 KiB or a whole page-cache folio around every code fault), so
//! they would count in the resident set for the life of the process. After
//! a few samples hostbeat asks the kernel to unmap its read-only code
//! mappings ([`release_startup_code`]): the pages stay in the page cache,
//! and what the loop still runs faults back in at once (minor faults, no
//! I/O). The release link places the loop's code together
//! (`benches/hot-text.ld`, see `build.rs`), so little comes back: about
//! 0.5 MB of the 2 MB of code. [`one_malloc_arena`] keeps the heap in one
//! piece.

use std::fs;

/// Unmaps the read-only, executable file mappings of this process (its own
/// code and its libraries'). Returns the bytes advised. Only mappings that
/// are `r-xp` are touched: nothing ever wrote to them, so dropping their
/// pages loses nothing.
pub fn release_startup_code() -> usize {
    let Ok(maps) = fs::read_to_string("/proc/self/maps") else {
        return 0;
    };
    // Parsed first: once the pages are gone, only code of the steady loop
    // (placed together by the linker script) should run, or its pages come
    // straight back.
    let ranges: Vec<(usize, usize)> = code_ranges(&maps).collect();
    let mut released = 0;
    for &(start, end) in &ranges {
        // SAFETY: a private, read-only, executable file mapping of this
        // process: MADV_DONTNEED only drops its page-table entries; the
        // next access refaults the same bytes from the page cache.
        if unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) } == 0 {
            released += end - start;
        }
    }
    released
}

/// Makes every thread allocate from glibc's main heap. By default each
/// thread that allocates gets an arena of its own (an extra heap, with its
/// own free pages); the agent's two threads allocate little and seldom at
/// the same time. Call before other threads start.
pub fn one_malloc_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// `(start, end)` of every private `r-xp` file mapping in `/proc/PID/maps` text.
fn code_ranges(maps: &str) -> impl Iterator<Item = (usize, usize)> + '_ {
    maps.lines().filter_map(|line| {
        let mut f = line.split_ascii_whitespace();
        let (range, perms) = (f.next()?, f.next()?);
        let path = f.nth(3)?;
        if perms != "r-xp" || !path.starts_with('/') {
            return None;
        }
        let (a, b) = range.split_once('-')?;
        Some((
            usize::from_str_radix(a, 16).ok()?,
            usize::from_str_radix(b, 16).ok()?,
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPS: &str = "\
55d0c0a00000-55d0c0ae5000 r--p 00000000 fe:00 123 /usr/bin/hostbeat
55d0c0ae5000-55d0c0cc1000 r-xp 000e5000 fe:00 123 /usr/bin/hostbeat
55d0c0cc1000-55d0c0cdc000 r--p 002c1000 fe:00 123 /usr/bin/hostbeat
55d0c0cdc000-55d0c0cde000 rw-p 002dc000 fe:00 123 /usr/bin/hostbeat
55d0c2000000-55d0c20a2000 rw-p 00000000 00:00 0 [heap]
7f1209500000-7f1209600000 r-xp 00000000 00:00 0
7f12097e0000-7f1209936000 r-xp 00026000 fe:00 456 /usr/lib/x86_64-linux-gnu/libc.so.6
7f1209937000-7f1209938000 r-xs 00000000 fe:00 789 /dev/shm/shared code
7ffe5ff96000-7ffe5ffb7000 rw-p 00000000 00:00 0 [stack]
7f12099cd000-7f12099cf000 r-xp 00000000 00:00 0 [vdso]
";

    #[test]
    fn only_private_executable_file_mappings() {
        let ranges: Vec<_> = code_ranges(MAPS).collect();
        assert_eq!(
            ranges,
            [(0x55d0c0ae5000, 0x55d0c0cc1000), (0x7f12097e0000, 0x7f1209936000)]
        );
    }

    #[test]
    fn malformed_lines_are_skipped() {
        let maps = "garbage\nzz-10 r-xp 0 fe:00 1 /x\n1000-2000 r-xp 0 fe:00 1 /ok\n1000-2000 r-xp";
        assert_eq!(code_ranges(maps).collect::<Vec<_>>(), [(0x1000, 0x2000)]);
    }

    #[test]
    fn releasing_keeps_the_process_running() {
        // Dropped code pages fault back in: calling it twice and then
        // running more code must just work.
        release_startup_code();
        assert!(release_startup_code() > 0);
        assert_eq!(code_ranges(MAPS).count(), 2);
    }
}
