//! `GET /api/v1/catalog`: what a requester may ask for. Every dataset and its elements, each
//! with the lowest level that may carry it, its class, whether it is supplemental (Appendix C,
//! asked for by name), how each level renders it, and how it may group an aggregate table at
//! Level I. The catalog is the shipped policy: no personal data.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::Json;
use serde::Serialize;

use super::Authed;
use crate::auth::{Action, Resource};
use crate::domain::aggregate::{allowed_groupings, Grouping};
use crate::domain::level::Level;
use crate::http::{ApiError, AppState};
use crate::policy::{ElementClass, FileType, Transform};

/// The catalog.
#[derive(Serialize)]
pub struct CatalogDto {
    datasets: Vec<DatasetDto>,
}

/// One dataset (file type).
#[derive(Serialize)]
pub struct DatasetDto {
    id: &'static str,
    elements: Vec<ElementDto>,
}

/// One element.
#[derive(Serialize)]
pub struct ElementDto {
    id: String,
    name: String,
    /// The lowest level that may carry it; `None`: never released at row level.
    level: Option<Level>,
    class: ElementClass,
    supplemental: bool,
    /// How each level renders it (absent: not at that level).
    transforms: BTreeMap<Level, Transform>,
    /// Why the catalog reads the rule as it does, where it says.
    note: Option<String>,
    /// How it may group an aggregate table at Level I.
    level_one_groupings: Vec<Grouping>,
}

pub(super) async fn show(
    State(state): State<AppState>,
    a: Authed,
) -> Result<Json<CatalogDto>, ApiError> {
    a.authorize(&state, Action::ReadCatalog, &Resource::Catalog)
        .await?;
    let catalog = state.releases.catalog();
    let datasets = FileType::ALL
        .iter()
        .map(|&file_type| DatasetDto {
            id: file_type.as_str(),
            elements: catalog
                .elements_of(file_type)
                .map(|e| ElementDto {
                    id: e.id.as_str().to_owned(),
                    name: e.name.clone(),
                    level: e.lowest_level,
                    class: e.class,
                    supplemental: e.supplemental,
                    transforms: [Level::I, Level::II, Level::III]
                        .into_iter()
                        .filter_map(|l| e.transform_at(l).map(|t| (l, t)))
                        .collect(),
                    note: e.note.clone(),
                    level_one_groupings: allowed_groupings(e, Level::I),
                })
                .collect(),
        })
        .collect();
    Ok(Json(CatalogDto { datasets }))
}
