//! Why a comparison could not be made (usage or connection problems; disagreements are results, not errors).
//!
//! Messages follow the crate's display rule: each names its cause and keeps it as `#[source]`, so the
//! CLI prints the chain once.

use crate::detect::MappingFetchError;
use crate::es::EsError;

#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    /// The request cannot be answered as asked (range, ambiguous rule, missing index or endpoint).
    #[error("{0}")]
    Usage(String),
    /// A request to the cluster got no usable answer.
    #[error("{what}: {source}")]
    Es {
        what: String,
        #[source]
        source: EsError,
    },
    /// The cluster answered, but not with what a comparison needs (an error status, a partial answer,
    /// an alert without the fields that place it).
    #[error("{0}")]
    Answer(String),
    /// The field mapping the reasons are explained with could not be read.
    #[error("could not read the field mapping: {0}")]
    Mapping(#[source] MappingFetchError),
    /// esdetect's own run of a window failed.
    #[error("esdetect could not run {0}")]
    Run(String),
}

impl CompareError {
    /// A failed request, with what it was for.
    pub(crate) fn es(what: impl Into<String>) -> impl FnOnce(EsError) -> CompareError {
        let what = what.into();
        move |source| CompareError::Es { what, source }
    }
}
