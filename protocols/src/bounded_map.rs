//! A map bounded by its number of entries: the MySQL and PostgreSQL parsers keep prepared
//! statements in one, so a client that prepares without closing cannot grow a connection's
//! state without limit.

use std::{
    collections::{HashMap, VecDeque},
    hash::Hash,
};

/// A map that keeps at most `cap` entries, forgetting the oldest inserted first.
#[derive(Debug)]
pub(crate) struct BoundedMap<K, V> {
    map: HashMap<K, V>,
    /// Keys in insertion order; may hold keys since removed.
    order: VecDeque<K>,
    cap: usize,
}

impl<K: Hash + Eq + Clone, V> BoundedMap<K, V> {
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            map: HashMap::new(),
            order: VecDeque::new(),
            cap: cap.max(1),
        }
    }

    pub(crate) fn insert(&mut self, key: K, value: V) {
        if self.map.insert(key.clone(), value).is_some() {
            return;
        }
        self.order.push_back(key);
        while self.map.len() > self.cap {
            match self.order.pop_front() {
                Some(old) => {
                    self.map.remove(&old);
                }
                None => break,
            }
        }
        if self.order.len() > 2 * self.cap {
            self.order.retain(|k| self.map.contains_key(k));
        }
    }

    pub(crate) fn get(&self, key: &K) -> Option<&V> {
        self.map.get(key)
    }

    pub(crate) fn remove(&mut self, key: &K) {
        self.map.remove(key);
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_map_forgets_oldest() {
        let mut map = BoundedMap::new(3);
        for i in 0..10u32 {
            map.insert(i, i * 10);
        }
        assert_eq!(map.len(), 3);
        assert_eq!(map.get(&9), Some(&90));
        assert_eq!(map.get(&6), None);
        map.remove(&8);
        map.insert(10, 100);
        map.insert(11, 110);
        assert_eq!(map.len(), 3);
        assert_eq!(map.get(&7), None);
        assert_eq!(map.get(&9), Some(&90));
        assert_eq!(map.get(&11), Some(&110));
    }
}
