//! Admin API handlers for the catalog, settings and pricing (admin/API.md).
