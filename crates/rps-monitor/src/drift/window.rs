//! A bounded window of the most recent model inputs (feature rows), keyed by (coin, hour) so a
//! window sent again — a client retrying, a benchmark repeating one request — counts once and
//! cannot fake a distribution shift.

use std::collections::{HashMap, VecDeque};

/// The last `capacity` distinct (coin, hour) feature rows, oldest evicted first.
#[derive(Debug, Clone)]
pub struct InputWindow {
    capacity: usize,
    order: VecDeque<(String, i64)>,
    rows: HashMap<(String, i64), Vec<f64>>,
    version: u64,
}

impl InputWindow {
    /// An empty window holding at most `capacity` rows (at least 1).
    pub fn new(capacity: usize) -> Self {
        InputWindow {
            capacity: capacity.max(1),
            order: VecDeque::new(),
            rows: HashMap::new(),
            version: 0,
        }
    }

    /// Adds (or refreshes in place) the row of `coin` at hour `ts`; returns whether it was new.
    pub fn push(&mut self, coin: &str, ts: i64, row: &[f64]) -> bool {
        let key = (coin.to_string(), ts);
        self.version += 1;
        if let Some(existing) = self.rows.get_mut(&key) {
            existing.clear();
            existing.extend_from_slice(row);
            return false;
        }
        if self.order.len() == self.capacity
            && let Some(old) = self.order.pop_front()
        {
            self.rows.remove(&old);
        }
        self.order.push_back(key.clone());
        self.rows.insert(key, row.to_vec());
        true
    }

    /// Number of rows held.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether no row is held.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// The maximum number of rows.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Changes on every push: lets readers cache results computed from the window.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Values of column `j` over the window (rows too short for `j` are skipped).
    pub fn column(&self, j: usize) -> Vec<f64> {
        self.order
            .iter()
            .filter_map(|k| self.rows.get(k).and_then(|r| r.get(j).copied()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_coin_and_hour_counts_once() {
        let mut w = InputWindow::new(10);
        assert!(w.push("BTC", 0, &[1.0, 2.0]));
        assert!(!w.push("BTC", 0, &[3.0, 4.0]));
        assert!(w.push("ETH", 0, &[5.0, 6.0]));
        assert_eq!(w.len(), 2);
        assert_eq!(w.column(0), vec![3.0, 5.0]);
    }

    #[test]
    fn the_oldest_rows_are_evicted_at_capacity() {
        let mut w = InputWindow::new(3);
        for ts in 0..5 {
            w.push("BTC", ts, &[ts as f64]);
        }
        assert_eq!(w.len(), 3);
        assert_eq!(w.column(0), vec![2.0, 3.0, 4.0]);
        // A re-pushed evicted hour is new again.
        assert!(w.push("BTC", 0, &[9.0]));
        assert_eq!(w.column(0), vec![3.0, 4.0, 9.0]);
    }
}
