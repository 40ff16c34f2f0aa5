//! Where received arguments live: chunks of memory this crate owns, shared by the events
//! decoded from them.
//!
//! Decoding an event copies its arguments once, out of the transport's frame and into the
//! current chunk, and hands out a reference-counted slice of it: no allocation per event, and
//! the transport's read buffer is never held by an event the application has not read yet
//! (holding it would make tungstenite allocate a new read buffer while the old one is pinned).
//! A chunk is freed, or reused in place, once every event cut from it is dropped.

use bytes::BytesMut;
use bytes_utils::{Str, StrMut};

/// One chunk. Small enough that an event kept for long pins little; large enough that a
/// busy connection allocates once per ~100 small events.
const CHUNK: usize = 8 << 10;

/// Arguments longer than this get an allocation of their own rather than a share of a chunk
/// (the copy dominates there, and a large event would otherwise waste a chunk's tail).
const LARGEST_SHARED: usize = CHUNK / 8;

/// The chunk being filled; none until the first event (an idle client keeps no chunk).
#[derive(Default)]
pub(crate) struct Arena {
    chunk: Option<StrMut>,
}

fn new_chunk() -> StrMut {
    // An empty buffer is valid UTF-8; the capacity is what later chunks are sized after
    // (starting from `StrMut::new()` would size each later one after a single event).
    StrMut::from_inner(BytesMut::with_capacity(CHUNK)).unwrap_or_else(|_| StrMut::new())
}

impl Arena {
    /// `[`, `inner`, `]` as one shared string.
    pub(crate) fn array(&mut self, inner: &str) -> Str {
        if inner.len() + 2 > LARGEST_SHARED {
            let mut own = String::with_capacity(inner.len() + 2);
            own.push('[');
            own.push_str(inner);
            own.push(']');
            return Str::from(own);
        }
        let chunk = self.chunk.get_or_insert_with(new_chunk);
        chunk.push_str("[");
        chunk.push_str(inner);
        chunk.push_str("]");
        chunk.split_built().freeze()
    }

    /// `text` as one shared string.
    pub(crate) fn copy(&mut self, text: &str) -> Str {
        if text.len() > LARGEST_SHARED {
            return Str::from(text);
        }
        let chunk = self.chunk.get_or_insert_with(new_chunk);
        chunk.push_str(text);
        chunk.split_built().freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_of_one_chunk_stay_apart() {
        let mut arena = Arena::default();
        let a = arena.array("1,2");
        let b = arena.array("");
        let c = arena.copy(r#"["x"]"#);
        assert_eq!((&*a, &*b, &*c), ("[1,2]", "[]", r#"["x"]"#));
        // Small ones share the chunk: consecutive in memory.
        assert_eq!(a.as_ptr() as usize + a.len(), b.as_ptr() as usize);
    }

    #[test]
    fn large_arguments_get_their_own_allocation() {
        let mut arena = Arena::default();
        let big = "7,".repeat(LARGEST_SHARED) + "7";
        let a = arena.array(&big);
        assert_eq!(a.len(), big.len() + 2);
        let small = arena.array("1");
        assert_ne!(a.as_ptr() as usize + a.len(), small.as_ptr() as usize);
        assert_eq!(&*small, "[1]");
    }

    #[test]
    fn fills_many_chunks_without_mixing_contents() {
        let mut arena = Arena::default();
        let kept: Vec<(String, Str)> = (0..5_000)
            .map(|i| {
                let inner = format!("{i},\"{}\"", "é".repeat(i % 7));
                let shared = arena.array(&inner);
                (format!("[{inner}]"), shared)
            })
            .collect();
        for (want, got) in &kept {
            assert_eq!(want.as_str(), &**got);
        }
    }
}
