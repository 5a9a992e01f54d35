//! Detection of rows whose USD `volume` is really a coin amount (swapped volume columns at
//! import); the rule and why it is built this way are in the crate docs (`volume_units`).

/// Which rows look unit-swapped, given `(volume, close)` per row in time order.
///
/// A row is evidence when `0 < volume < close`. Rows without a positive finite volume or a
/// positive finite close are neither evidence nor flagged. Each eligible row is flagged when
/// more than half of the eligible rows within `window` eligible rows on either side (itself
/// included) are evidence; on a tie its own evidence decides.
pub fn swapped_rows(rows: &[(Option<f64>, f64)], window: usize) -> Vec<bool> {
    let eligible: Vec<usize> = rows
        .iter()
        .enumerate()
        .filter(|(_, (v, c))| {
            matches!(v, Some(v) if v.is_finite() && *v > 0.0) && c.is_finite() && *c > 0.0
        })
        .map(|(i, _)| i)
        .collect();
    let evidence: Vec<bool> = eligible
        .iter()
        .map(|&i| matches!(rows[i], (Some(v), c) if v < c))
        .collect();
    // prefix[j] = evidence count among the first j eligible rows.
    let mut prefix = Vec::with_capacity(evidence.len() + 1);
    prefix.push(0usize);
    for &e in &evidence {
        prefix.push(prefix[prefix.len() - 1] + usize::from(e));
    }
    let mut out = vec![false; rows.len()];
    for (j, &i) in eligible.iter().enumerate() {
        let lo = j.saturating_sub(window);
        let hi = (j + window + 1).min(eligible.len());
        let votes = prefix[hi] - prefix[lo];
        let n = hi - lo;
        out[i] = match (2 * votes).cmp(&n) {
            std::cmp::Ordering::Greater => true,
            std::cmp::Ordering::Less => false,
            std::cmp::Ordering::Equal => evidence[j],
        };
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A normal hour: 100 coins at 20,000 USD stored as USD.
    const NORMAL: (Option<f64>, f64) = (Some(2_000_000.0), 20_000.0);
    /// A swapped hour: the 100 coins stored where USD belongs.
    const SWAPPED: (Option<f64>, f64) = (Some(100.0), 20_000.0);

    #[test]
    fn a_run_of_swapped_rows_is_flagged_exactly() {
        let mut rows = vec![NORMAL; 50];
        rows.extend(vec![SWAPPED; 30]);
        rows.extend(vec![NORMAL; 50]);
        let flags = swapped_rows(&rows, 12);
        let expected: Vec<bool> = (0..130).map(|i| (50..80).contains(&i)).collect();
        assert_eq!(flags, expected);
    }

    #[test]
    fn a_lone_quiet_hour_among_normal_rows_is_not_flagged() {
        let mut rows = vec![NORMAL; 40];
        rows[20] = (Some(0.5 * 20_000.0), 20_000.0); // half a coin traded: real, just quiet
        assert!(swapped_rows(&rows, 12).iter().all(|f| !f));
    }

    #[test]
    fn a_busy_hour_inside_a_swapped_run_is_still_flagged() {
        let mut rows = vec![SWAPPED; 40];
        rows[20] = (Some(30_000.0), 20_000.0); // 30,000 coins in a crash hour, swapped
        assert!(swapped_rows(&rows, 12).iter().all(|f| *f));
    }

    #[test]
    fn zero_and_missing_volumes_are_never_flagged() {
        let mut rows = vec![SWAPPED; 20];
        rows[5] = (Some(0.0), 20_000.0);
        rows[6] = (None, 20_000.0);
        rows[7] = (Some(f64::NAN), 20_000.0);
        let flags = swapped_rows(&rows, 12);
        assert_eq!(flags.iter().filter(|f| **f).count(), 17);
        assert!(!flags[5] && !flags[6] && !flags[7]);
    }
}
