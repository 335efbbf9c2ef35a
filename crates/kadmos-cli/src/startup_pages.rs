//! Gives back the memory a daemon needed only to start.
//!
//! Parsing the command line, reading the state, binding sockets, joining the network and
//! setting up the control API run code and allocate memory that an idle node never touches
//! again, yet both stay resident: the code because the kernel maps an executable's pages
//! around each fault (on recent kernels, a whole large folio of the page cache, often most of
//! the file) and keeps them mapped, the memory because malloc keeps freed heap. Once the node
//! has joined, the daemon pages out its read-only file mappings (code and constants of the
//! executable and its libraries: nothing is lost, what runs later is read back from the file,
//! page by page, without read-around) and returns freed heap and unused stack to the kernel.
//! Only mappings that are read-only, backed by a file and without pages of their own are
//! touched; data, relocated or not, stays as it is. Pages another process also maps stay in
//! memory for it.

/// Releases startup pages (Linux; elsewhere it does nothing). Returns the bytes of mappings
/// released, for the log.
pub fn release() -> u64 {
    imp::release()
}

#[cfg(target_os = "linux")]
mod imp {
    pub fn release() -> u64 {
        let released = release_code();
        release_unused_stack();
        // Last, once the smaps text read below is freed too.
        // SAFETY: malloc_trim only returns free memory of the allocator to the kernel.
        #[cfg(target_env = "gnu")]
        unsafe {
            libc::malloc_trim(0);
        }
        released
    }

    /// Below the stack pointer, the main thread's stack holds nothing (the deep calls of
    /// startup have returned), but its pages stay resident: drop them, keeping a margin
    /// (the red zone and more). Only when called on the main thread, whose stack is the
    /// `[stack]` mapping.
    fn release_unused_stack() {
        const MARGIN: usize = 64 * 1024;
        let here = 0u8;
        let sp = std::hint::black_box(&here) as *const u8 as usize;
        let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else { return };
        let Some(range) = maps.lines().find(|l| l.ends_with("[stack]")).and_then(|l| l.split_whitespace().next())
        else {
            return;
        };
        let Some((Ok(start), Ok(end))) =
            range.split_once('-').map(|(a, b)| (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16)))
        else {
            return;
        };
        if !(start..end).contains(&sp) {
            return;
        }
        // SAFETY: sysconf only reads a system constant.
        let page = match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
            size if size > 0 => size as usize,
            _ => 4096,
        };
        let top = sp.saturating_sub(MARGIN) & !(page - 1);
        if top > start {
            // SAFETY: [start, top) lies below this frame's stack pointer by more than the
            // margin, on this thread's own stack: nothing live is there, and the pages read
            // back as zeros if the stack grows into them again.
            unsafe {
                libc::madvise(start as *mut libc::c_void, top - start, libc::MADV_DONTNEED);
            }
        }
    }

    fn release_code() -> u64 {
        let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else { return 0 };
        let mut released = 0;
        let mut candidate: Option<(usize, usize)> = None;
        for line in smaps.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields[..] {
                // A mapping's header: start-end perms offset dev inode [path].
                [range, perms, _offset, _dev, inode, path, ..] if range.contains('-') && !range.ends_with(':') => {
                    // Read-only and file-backed only: [vdso] and other pseudo-mappings have inode 0.
                    let read_only = perms == "r-xp" || perms == "r--p";
                    candidate = (read_only && inode != "0" && !path.starts_with('['))
                        .then(|| range.split_once('-'))
                        .flatten()
                        .and_then(|(a, b)| {
                            Some((usize::from_str_radix(a, 16).ok()?, usize::from_str_radix(b, 16).ok()?))
                        });
                }
                [header, ..] if header.contains('-') && !header.ends_with(':') => candidate = None,
                // A mapping patched in memory (relocated data made read-only again, text
                // relocations, a debugger's breakpoints) has copied pages of its own, which
                // would be lost: it is left alone. The field comes before VmFlags, the last.
                ["Anonymous:", kib, ..] if kib != "0" => candidate = None,
                ["VmFlags:", ..] => {
                    if let Some((start, end)) = candidate.take() {
                        // SAFETY: a private, read-only file mapping of this process with no page
                        // of its own: paging it out (or, on kernels before 5.4, dropping it)
                        // loses no data, and any page used afterwards (this function's too) is
                        // read back from the file.
                        // Then no read-around: a page used later is read alone, not with
                        // its neighbours, which would be mapped along with it.
                        let at = start as *mut libc::c_void;
                        let done = unsafe {
                            let out = libc::madvise(at, end - start, libc::MADV_PAGEOUT) == 0
                                || libc::madvise(at, end - start, libc::MADV_DONTNEED) == 0;
                            libc::madvise(at, end - start, libc::MADV_RANDOM);
                            out
                        };
                        if done {
                            released += (end - start) as u64;
                        }
                    }
                }
                _ => {}
            }
        }
        released
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    pub fn release() -> u64 {
        0
    }
}
