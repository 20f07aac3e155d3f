//! The plugin's allocator: a bump arena in the module's own zeroed data,
//! falling back to the system allocator when it is full.
//!
//! Every call runs in a fresh instance, so memory never needs to outlive a
//! call. Serving a call's allocations from memory the module already has,
//! instead of growing linear memory, spares the host two page-protection
//! changes per call (growing, then shrinking the pooled slot back), which
//! cost a TLB flush on every core.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use std::alloc::System;

/// Size of the arena; allocations beyond it go to the system allocator.
pub const ARENA_BYTES: usize = 1 << 20;

#[repr(C, align(16))]
struct Arena {
    bytes: UnsafeCell<[u8; ARENA_BYTES]>,
    /// Offset of the first free byte.
    next: UnsafeCell<usize>,
}

// SAFETY: wasm32-unknown-unknown plugins are single-threaded.
unsafe impl Sync for Arena {}

static ARENA: Arena = Arena {
    bytes: UnsafeCell::new([0; ARENA_BYTES]),
    next: UnsafeCell::new(0),
};

/// Bump allocation in [`ARENA`]; freeing the newest block gives it back, so
/// a growing `Vec` or `String` reallocates in place.
pub struct CallArena;

impl CallArena {
    fn base() -> usize {
        ARENA.bytes.get() as usize
    }

    fn owns(ptr: *mut u8) -> bool {
        let p = ptr as usize;
        p >= Self::base() && p < Self::base() + ARENA_BYTES
    }
}

unsafe impl GlobalAlloc for CallArena {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: single-threaded; `next` is only touched here and in
        // dealloc/realloc, never re-entrantly.
        let next = unsafe { &mut *ARENA.next.get() };
        let base = Self::base();
        let start = (base + *next).next_multiple_of(layout.align());
        let end = start + layout.size();
        if end <= base + ARENA_BYTES {
            *next = end - base;
            return start as *mut u8;
        }
        // SAFETY: forwarding the caller's layout.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if Self::owns(ptr) {
            let next = unsafe { &mut *ARENA.next.get() };
            if ptr as usize + layout.size() == Self::base() + *next {
                *next = ptr as usize - Self::base();
            }
            return;
        }
        // SAFETY: not ours, so the system allocator made it.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if Self::owns(ptr) {
            let next = unsafe { &mut *ARENA.next.get() };
            let base = Self::base();
            // The newest block grows or shrinks in place when it fits.
            if ptr as usize + layout.size() == base + *next
                && ptr as usize + new_size <= base + ARENA_BYTES
            {
                *next = ptr as usize + new_size - base;
                return ptr;
            }
        }
        // SAFETY: the default: allocate, copy, free, with valid layouts.
        unsafe {
            let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
            let new = self.alloc(new_layout);
            if !new.is_null() {
                core::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            new
        }
    }
}

#[cfg(target_arch = "wasm32")]
#[global_allocator]
static GLOBAL: CallArena = CallArena;
