//! The exit-code contract of every stage: what each code means to a caller (Airflow, DVC, a shell).

/// Process exit codes shared by all stages. 99 is never used: Airflow reads it as "skip".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ExitCode {
    /// Success.
    Ok = 0,
    /// An unexpected internal failure (a bug).
    Internal = 1,
    /// Bad usage or bad input; the message names the file/row/field.
    BadInput = 2,
    /// A data-quality failure (validate), a drift alarm (drift check) or a gate refusal (train).
    Quality = 3,
    /// An external service (API, MLflow, S3) failed after retries.
    External = 4,
}

impl From<ExitCode> for std::process::ExitCode {
    fn from(c: ExitCode) -> Self {
        std::process::ExitCode::from(c as u8)
    }
}
