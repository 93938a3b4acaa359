//! What a release produces besides the extract itself: the approval letter. The release's
//! lifecycle, request and DUA terms are pure types in `crate::domain`.

pub mod letter;
