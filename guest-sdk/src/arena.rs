//! The guest's global allocator: a bump arena for the allocations of a call.
//!
//! Every plugin call starts with the host copying its arguments into the
//! guest, one `cabi_realloc` per string (a resolver gets up to seven strings and
//! an argument block), and ends with the guest freeing them all. With a
//! general-purpose allocator (dlmalloc) that bookkeeping cost more than the
//! policy itself: ~300 wasm instructions per allocation and per free. Here an
//! allocation is a pointer bump in one chunk, a free is a decrement of the
//! chunk's live count, and the chunk is reused from its start as soon as the
//! count falls to zero, which is normally when the call's post-return has
//! freed the last argument or answer.
//!
//! The arena is correct whatever the plugin does, because it reuses memory
//! only when nothing in it is live:
//! - Allocations that do not fit go to the system allocator, and the next
//!   chunk is twice as large (up to [`MAX_CHUNK`]).
//! - `configure` runs in [`persistent`] mode: the plugin's state is allocated
//!   with the system allocator, so it never pins the arena.
//! - An allocation kept past the end of a call (a lazily initialised static,
//!   say) keeps the count above zero: the chunk is never reused again, and
//!   the instance degrades to the system allocator once it is full. Such
//!   state belongs in `configure`.
//!
//! Natively the arena is an ordinary value (the tests drive it directly); on
//! `wasm32` it is the `#[global_allocator]` of every plugin built with this
//! crate. Plugins are single-threaded (the host refuses shared memories), so
//! the state needs no synchronisation.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::ptr;

/// Size of the first chunk, allocated on the first allocation of a call.
pub const FIRST_CHUNK: usize = 16 << 10;
/// Largest chunk: a call that needs more uses the system allocator for the rest.
pub const MAX_CHUNK: usize = 4 << 20;
/// Alignment of a chunk (the largest alignment a wasm value needs).
const CHUNK_ALIGN: usize = 16;

struct State {
    /// Start of the chunk (0 until the first arena allocation).
    base: usize,
    /// Size of the chunk at `base`, or of the next one to allocate.
    size: usize,
    /// First free byte of the chunk.
    top: usize,
    /// Arena allocations not yet freed.
    live: usize,
    /// An allocation did not fit since the chunk was last reset.
    overflowed: bool,
    /// Nesting depth of [`persistent`] sections: while above zero, new
    /// allocations go to the system allocator.
    persistent: u32,
}

/// A bump arena over the system allocator (see the module docs).
pub struct Arena {
    state: UnsafeCell<State>,
}

// SAFETY: a wasm32 plugin instance runs on one thread: the host never gives
// it shared memory or threads, so the arena is never used concurrently.
#[cfg(target_arch = "wasm32")]
unsafe impl Sync for Arena {}

impl Arena {
    /// An empty arena; its first chunk is allocated on first use.
    pub const fn new() -> Arena {
        Arena {
            state: UnsafeCell::new(State {
                base: 0,
                size: FIRST_CHUNK,
                top: 0,
                live: 0,
                overflowed: false,
                persistent: 0,
            }),
        }
    }

    #[allow(clippy::mut_from_ref)]
    #[inline(always)]
    fn state(&self) -> &mut State {
        // SAFETY: the arena is used from one thread (see the `Sync` impl) and
        // no method holds this borrow across a call to another method.
        unsafe { &mut *self.state.get() }
    }

    /// True when `ptr` lies in the current chunk.
    #[inline(always)]
    fn owns(&self, ptr: *mut u8) -> bool {
        let s = self.state();
        let p = ptr as usize;
        s.base != 0 && p >= s.base && p < s.base + s.size
    }

    /// Allocates from the chunk, or returns null when it does not fit (or
    /// there is no chunk yet). Small enough to inline into `cabi_realloc`.
    #[inline(always)]
    fn bump(&self, layout: Layout) -> *mut u8 {
        let s = self.state();
        let start = (s.top + layout.align() - 1) & !(layout.align() - 1);
        match start.checked_add(layout.size()) {
            Some(end) if s.base != 0 && end <= s.base + s.size => {
                s.top = end;
                s.live += 1;
                start as *mut u8
            }
            _ => ptr::null_mut(),
        }
    }

    /// Allocates when [`Arena::bump`] could not: from a first chunk, or from
    /// the system allocator when the chunk is full or the arena is in
    /// persistent mode.
    #[cold]
    #[inline(never)]
    fn alloc_slow(&self, layout: Layout) -> *mut u8 {
        let s = self.state();
        if s.persistent == 0 {
            if s.base == 0 {
                // SAFETY: the chunk layout has a non-zero size and a valid alignment.
                let chunk = unsafe { System.alloc(chunk_layout(s.size)) };
                if !chunk.is_null() {
                    s.base = chunk as usize;
                    s.top = s.base;
                    let p = self.bump(layout);
                    if !p.is_null() {
                        return p;
                    }
                }
            }
            self.state().overflowed = true;
        }
        // SAFETY: `layout` has a non-zero size (`GlobalAlloc::alloc`'s contract).
        unsafe { System.alloc(layout) }
    }

    /// Frees an allocation of the chunk.
    #[inline(always)]
    fn release(&self, ptr: *mut u8, layout: Layout) {
        let s = self.state();
        s.live -= 1;
        if s.live == 0 {
            self.reset();
        } else if ptr as usize + layout.size() == s.top {
            // The newest allocation: its space can be bumped again at once.
            s.top = ptr as usize;
        }
    }

    /// Nothing in the chunk is live: reuse it from its start, or replace it
    /// by a larger one if the last round did not fit.
    #[inline(always)]
    fn reset(&self) {
        let s = self.state();
        s.top = s.base;
        if s.overflowed {
            self.grow();
        }
    }

    #[cold]
    #[inline(never)]
    fn grow(&self) {
        let s = self.state();
        s.overflowed = false;
        if s.size < MAX_CHUNK && s.base != 0 {
            // SAFETY: `base` was allocated with exactly this layout.
            unsafe { System.dealloc(s.base as *mut u8, chunk_layout(s.size)) };
            s.base = 0;
            s.top = 0;
            s.size = (s.size * 2).min(MAX_CHUNK);
        }
    }

    /// Runs `f` with new allocations going to the system allocator, for
    /// state that outlives a call (the configured plugin).
    pub fn persistent<R>(&self, f: impl FnOnce() -> R) -> R {
        self.state().persistent += 1;
        let result = f();
        self.state().persistent -= 1;
        result
    }

    /// Arena allocations not yet freed.
    #[cfg(test)]
    pub fn live(&self) -> usize {
        self.state().live
    }
}

impl Default for Arena {
    fn default() -> Self {
        Arena::new()
    }
}

fn chunk_layout(size: usize) -> Layout {
    match Layout::from_size_align(size, CHUNK_ALIGN) {
        Ok(layout) => layout,
        Err(_) => unreachable!("chunk sizes are small powers of two"),
    }
}

// SAFETY: every pointer handed out is either a fresh, suitably aligned range
// of the current chunk that no live allocation overlaps (the chunk is reused
// only when no allocation in it is live), or comes from `System`; frees and
// reallocations are routed by address to whichever of the two owns the block.
unsafe impl GlobalAlloc for Arena {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if self.state().persistent == 0 {
            let p = self.bump(layout);
            if !p.is_null() {
                return p;
            }
        }
        self.alloc_slow(layout)
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if self.owns(ptr) {
            self.release(ptr, layout);
        } else {
            // SAFETY: not in the chunk, so `System` allocated it.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !self.owns(ptr) {
            // SAFETY: not in the chunk, so `System` allocated it.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        let s = self.state();
        let p = ptr as usize;
        if s.persistent == 0 && p + layout.size() == s.top && p + new_size <= s.base + s.size {
            // The newest allocation grows or shrinks in place.
            s.top = p + new_size;
            return ptr;
        }
        if new_size <= layout.size() && s.persistent == 0 {
            return ptr;
        }
        // SAFETY: `realloc`'s contract guarantees a valid non-zero new size
        // with the old alignment.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: forwarded with the caller's guarantees.
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            // SAFETY: both blocks are at least `min(old, new)` bytes and distinct.
            unsafe { ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size)) };
            self.release(ptr, layout);
        }
        new
    }
}

/// Runs `f` with new allocations going to the system allocator (see
/// [`Arena::persistent`]); natively it just runs `f`.
pub(crate) fn persistent<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "wasm32")]
    {
        GLOBAL.persistent(f)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        f()
    }
}

#[cfg(target_arch = "wasm32")]
#[global_allocator]
static GLOBAL: Arena = Arena::new();

/// The canonical ABI's allocator export, through which the host copies every
/// argument in. It replaces wit-bindgen's (a weak symbol with the same
/// semantics) only to call the arena directly: wit-bindgen's goes through
/// three more wasm calls (`cabi_realloc_wit_bindgen_*`, `__rust_alloc`,
/// `GlobalAlloc::alloc`), each paying a call's fuel and stack checks, which
/// cost more than the bump itself.
///
/// # Safety
///
/// Called by the host per the canonical ABI: `old_ptr`/`old_len`/`align`
/// describe a live allocation (or `old_len` is 0), `align` is a power of two.
#[cfg(target_arch = "wasm32")]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cabi_realloc(
    old_ptr: *mut u8,
    old_len: usize,
    align: usize,
    new_len: usize,
) -> *mut u8 {
    let ptr = if old_len == 0 {
        if new_len == 0 {
            return align as *mut u8;
        }
        // SAFETY: non-zero size and a power-of-two alignment (the caller's contract).
        unsafe { GLOBAL.alloc(Layout::from_size_align_unchecked(new_len, align)) }
    } else {
        // SAFETY: as above, for a live block of `old_len` bytes.
        unsafe {
            GLOBAL.realloc(
                old_ptr,
                Layout::from_size_align_unchecked(old_len, align),
                new_len,
            )
        }
    };
    if ptr.is_null() {
        // Out of memory (the host's memory cap): trap, as wit-bindgen's does.
        core::arch::wasm32::unreachable();
    }
    ptr
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).expect("valid layout")
    }

    #[test]
    fn the_chunk_is_reused_once_nothing_in_it_is_live() {
        let a = Arena::new();
        unsafe {
            let x = a.alloc(layout(100, 1));
            let y = a.alloc(layout(8, 8));
            assert!(a.owns(x) && a.owns(y));
            assert_eq!(y as usize % 8, 0);
            assert_eq!(a.live(), 2);
            a.dealloc(x, layout(100, 1));
            // `y` is still live: nothing is reused.
            let z = a.alloc(layout(4, 4));
            assert!(z as usize >= y as usize + 8);
            a.dealloc(y, layout(8, 8));
            a.dealloc(z, layout(4, 4));
            assert_eq!(a.live(), 0);
            // Everything was freed: the next call starts at the chunk's start.
            assert_eq!(a.alloc(layout(1, 1)), x);
        }
    }

    #[test]
    fn the_newest_allocation_grows_in_place() {
        let a = Arena::new();
        unsafe {
            let x = a.alloc(layout(10, 1));
            x.write_bytes(7, 10);
            let y = a.realloc(x, layout(10, 1), 1000);
            assert_eq!(x, y);
            let z = a.alloc(layout(10, 1));
            // Not the newest any more: it moves, keeping its bytes.
            let w = a.realloc(y, layout(1000, 1), 2000);
            assert_ne!(w, y);
            assert_eq!(std::slice::from_raw_parts(w, 10), &[7; 10]);
            assert_eq!(a.live(), 2);
            a.dealloc(z, layout(10, 1));
            a.dealloc(w, layout(2000, 1));
            assert_eq!(a.live(), 0);
        }
    }

    #[test]
    fn what_does_not_fit_goes_to_the_system_and_the_next_chunk_is_larger() {
        let a = Arena::new();
        unsafe {
            let small = a.alloc(layout(16, 8));
            let big = a.alloc(layout(FIRST_CHUNK, 8));
            assert!(a.owns(small) && !a.owns(big));
            a.dealloc(big, layout(FIRST_CHUNK, 8));
            a.dealloc(small, layout(16, 8));
            let again = a.alloc(layout(FIRST_CHUNK, 8));
            assert!(a.owns(again), "the grown chunk holds it");
            a.dealloc(again, layout(FIRST_CHUNK, 8));
        }
    }

    #[test]
    fn a_first_allocation_larger_than_the_chunk_grows_it() {
        let a = Arena::new();
        unsafe {
            let big = a.alloc(layout(FIRST_CHUNK + 1, 8));
            assert!(!a.owns(big));
            let small = a.alloc(layout(8, 8));
            assert!(a.owns(small));
            a.dealloc(small, layout(8, 8));
            a.dealloc(big, layout(FIRST_CHUNK + 1, 8));
            let again = a.alloc(layout(FIRST_CHUNK + 1, 8));
            assert!(a.owns(again));
            a.dealloc(again, layout(FIRST_CHUNK + 1, 8));
            assert_eq!(a.live(), 0);
        }
    }

    #[test]
    fn persistent_allocations_do_not_pin_the_chunk() {
        let a = Arena::new();
        unsafe {
            let arg = a.alloc(layout(32, 1));
            let state = a.persistent(|| a.alloc(layout(64, 8)));
            assert!(!a.owns(state));
            a.dealloc(arg, layout(32, 1));
            assert_eq!(a.live(), 0);
            assert_eq!(a.alloc(layout(32, 1)), arg);
            a.dealloc(state, layout(64, 8));
        }
    }

    #[test]
    fn an_allocation_kept_past_a_call_stops_reuse_but_stays_intact() {
        let a = Arena::new();
        unsafe {
            let kept = a.alloc(layout(8, 8));
            kept.cast::<u64>().write(42);
            for _ in 0..10_000 {
                let x = a.alloc(layout(100, 4));
                assert_ne!(x, kept);
                a.dealloc(x, layout(100, 4));
            }
            assert_eq!(kept.cast::<u64>().read(), 42);
            a.dealloc(kept, layout(8, 8));
        }
    }
}
