//! The Page-Hinkley test for an increase in the mean of a stream: here, the scaled absolute
//! errors of past forecasts. A sustained rise in error means the relation the model learned no
//! longer holds (concept drift), even when the inputs still look like the training data.
//!
//! With running mean `x̄ₜ`, the cumulative sum `mₜ = Σ (xᵢ − x̄ᵢ − δ)` drifts downwards while
//! errors are stable; the statistic `PHₜ = mₜ − min mᵢ` grows when they rise, and drift is
//! declared once `PHₜ > λ` after at least `min_samples` observations. The alarm latches: the
//! remedy is a new model, and [`PageHinkley::reset`] is called when one is loaded.

/// Page-Hinkley detector state.
#[derive(Debug, Clone)]
pub struct PageHinkley {
    delta: f64,
    lambda: f64,
    min_samples: u64,
    n: u64,
    mean: f64,
    cum: f64,
    min_cum: f64,
    drift: bool,
}

impl PageHinkley {
    /// A detector tolerating mean increases below `delta` and alarming when the statistic
    /// exceeds `lambda` (both in the units of the observations).
    pub fn new(delta: f64, lambda: f64, min_samples: u64) -> Self {
        PageHinkley {
            delta,
            lambda,
            min_samples,
            n: 0,
            mean: 0.0,
            cum: 0.0,
            min_cum: 0.0,
            drift: false,
        }
    }

    /// Feeds one observation (non-finite values are ignored); returns whether drift is flagged.
    pub fn update(&mut self, x: f64) -> bool {
        if !x.is_finite() {
            return self.drift;
        }
        self.n += 1;
        self.mean += (x - self.mean) / self.n as f64;
        self.cum += x - self.mean - self.delta;
        self.min_cum = self.min_cum.min(self.cum);
        if self.n >= self.min_samples && self.statistic() > self.lambda {
            self.drift = true;
        }
        self.drift
    }

    /// The current statistic `mₜ − min mᵢ` (0 before any observation).
    pub fn statistic(&self) -> f64 {
        self.cum - self.min_cum
    }

    /// Whether drift has been flagged since the last reset.
    pub fn drift(&self) -> bool {
        self.drift
    }

    /// Observations since the last reset.
    pub fn samples(&self) -> u64 {
        self.n
    }

    /// The alarm threshold λ.
    pub fn lambda(&self) -> f64 {
        self.lambda
    }

    /// Forgets everything (a new model starts a new concept).
    pub fn reset(&mut self) {
        *self = PageHinkley::new(self.delta, self.lambda, self.min_samples);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic stream with values spread around `mean` (a fixed zig-zag pattern).
    fn stream(mean: f64, n: usize) -> impl Iterator<Item = f64> {
        const PATTERN: [f64; 8] = [0.2, 1.7, 0.9, 0.4, 1.3, 0.1, 1.9, 1.5];
        (0..n).map(move |i| mean * PATTERN[i % PATTERN.len()])
    }

    #[test]
    fn a_stationary_error_stream_never_raises_the_alarm() {
        let mut ph = PageHinkley::new(0.05, 20.0, 30);
        for x in stream(0.5, 5_000) {
            assert!(!ph.update(x));
        }
        assert!(ph.statistic() < 20.0);
    }

    #[test]
    fn errors_that_double_raise_the_alarm_and_it_latches_until_reset() {
        let mut ph = PageHinkley::new(0.05, 20.0, 30);
        for x in stream(0.5, 1_000) {
            ph.update(x);
        }
        assert!(!ph.drift());
        let mut fired_after = None;
        for (i, x) in stream(1.0, 1_000).enumerate() {
            if ph.update(x) {
                fired_after = Some(i);
                break;
            }
        }
        let fired_after = fired_after.expect("a doubled error mean must be detected");
        assert!(
            fired_after < 200,
            "detected only after {fired_after} observations"
        );
        for x in stream(0.5, 100) {
            assert!(ph.update(x), "the alarm must latch");
        }
        ph.reset();
        assert!(!ph.drift());
        assert_eq!(ph.samples(), 0);
        assert_eq!(ph.statistic(), 0.0);
    }

    #[test]
    fn no_alarm_before_the_minimum_number_of_samples() {
        let mut ph = PageHinkley::new(0.0, 0.5, 10);
        ph.update(0.0);
        for _ in 0..8 {
            assert!(!ph.update(100.0));
        }
        assert!(
            ph.statistic() > 0.5,
            "the statistic is over λ but only 9 samples were seen"
        );
        assert!(ph.update(100.0), "the 10th sample may raise the alarm");
    }

    #[test]
    fn non_finite_errors_are_ignored() {
        let mut ph = PageHinkley::new(0.05, 20.0, 1);
        ph.update(f64::NAN);
        ph.update(f64::INFINITY);
        assert_eq!(ph.samples(), 0);
    }
}
