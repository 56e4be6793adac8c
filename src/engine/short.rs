//! A short list kept in place: up to `N` elements without an allocation,
//! a `Vec` beyond. What a request reaches (its nodes and policies) is
//! usually a handful, and every request builds it: two allocations saved.
//! Engine-internal; it has no Lua twin (a Lua table is the list).

use std::ops::{Deref, DerefMut};

/// Up to `N` copies of `T` in place, then all of them on the heap.
#[derive(Clone)]
pub(crate) struct Short<T: Copy + Default, const N: usize> {
    len: usize,
    inline: [T; N],
    /// Every element once there are more than `N`; empty until then.
    heap: Vec<T>,
}

impl<T: Copy + Default, const N: usize> Short<T, N> {
    #[inline]
    pub(crate) fn new() -> Self {
        Short { len: 0, inline: [T::default(); N], heap: Vec::new() }
    }

    /// Empties the list, keeping its room.
    #[inline]
    pub(crate) fn clear(&mut self) {
        self.len = 0;
        self.heap.clear();
    }

    #[inline]
    pub(crate) fn push(&mut self, value: T) {
        if !self.heap.is_empty() {
            self.heap.push(value);
        } else if self.len < N {
            self.inline[self.len] = value;
            self.len += 1;
        } else {
            self.heap.reserve(2 * N + 1);
            self.heap.extend_from_slice(&self.inline[..self.len]);
            self.heap.push(value);
        }
    }
}

impl<T: Copy + Default, const N: usize> Default for Short<T, N> {
    fn default() -> Self {
        Short::new()
    }
}

impl<T: Copy + Default, const N: usize> Deref for Short<T, N> {
    type Target = [T];

    #[inline]
    fn deref(&self) -> &[T] {
        if self.heap.is_empty() { &self.inline[..self.len] } else { &self.heap }
    }
}

impl<T: Copy + Default, const N: usize> DerefMut for Short<T, N> {
    #[inline]
    fn deref_mut(&mut self) -> &mut [T] {
        if self.heap.is_empty() { &mut self.inline[..self.len] } else { &mut self.heap }
    }
}

impl<'a, T: Copy + Default, const N: usize> IntoIterator for &'a Short<T, N> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<T: Copy + Default, const N: usize> FromIterator<T> for Short<T, N> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        let mut list = Short::new();
        for value in iter {
            list.push(value);
        }
        list
    }
}

impl<T: Copy + Default + std::fmt::Debug, const N: usize> std::fmt::Debug for Short<T, N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::Short;

    #[test]
    fn a_short_list_is_the_same_list_in_place_and_beyond() {
        let mut list: Short<u32, 4> = Short::new();
        let mut plain = Vec::new();
        for i in 0..11 {
            assert_eq!(&list[..], &plain[..]);
            list.push(i);
            plain.push(i);
            assert_eq!(list.len(), plain.len());
        }
        list[2..].reverse();
        plain[2..].reverse();
        assert_eq!(&list[..], &plain[..]);
        let copy: Short<u32, 4> = plain.iter().copied().filter(|i| i % 2 == 0).collect();
        assert_eq!(copy.iter().copied().collect::<Vec<_>>(), vec![0, 10, 8, 6, 4, 2]);
        assert!(Short::<u32, 4>::default().is_empty());
    }
}
