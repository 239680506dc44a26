//! Interned route templates: one shared [`Route`] per template, holding its bound series and
//! its span names.

use std::borrow::Cow;
use std::sync::{Arc, OnceLock, RwLock};

use opentelemetry::StringValue;

use super::attributes::{Labels, METHODS, OTHER};
use super::hasher::FastMap;
use super::series::Series;

/// A route template (or "no route matched"), shared by every request to it, with the bound
/// series of the request histograms for each (method, scheme, version, status) seen on it.
#[derive(Debug, Default)]
pub(crate) struct Route {
    value: Option<StringValue>,
    /// Whether [`Self::series`] may cache: only for routes the interner keeps, so the cache
    /// lives as long as the layer.
    pub(crate) cached: bool,
    pub(crate) series: RwLock<FastMap<u32, Arc<Series>>>,
    /// The first series bound on this route, found without taking the lock: most routes see one
    /// (method, scheme, version, status) nearly always.
    pub(crate) first_series: OnceLock<(u32, Arc<Series>)>,
    /// The server span names of this route, one per method, made on first use.
    names: [OnceLock<&'static str>; METHODS.len()],
}

impl Route {
    /// `http.route`, or `None` when no route matched.
    pub(crate) fn value(&self) -> Option<&StringValue> {
        self.value.as_ref()
    }

    /// The server span name: `{method} {route}`, `{method}` when no route matched, with `HTTP`
    /// for `_OTHER` methods.
    ///
    /// Span names are `Cow<'static, str>`: a route the interner keeps makes its names once and
    /// keeps them for the life of the process (at most ten per route template, and at most
    /// 4096 templates per layer), so no request formats or allocates its span's name.
    pub(crate) fn span_name(&self, labels: Labels) -> Cow<'static, str> {
        let method = match labels.method() {
            OTHER => "HTTP",
            method => method,
        };
        let Some(route) = &self.value else {
            return Cow::Borrowed(method);
        };
        if !self.cached {
            return Cow::Owned(format!("{method} {}", route.as_str()));
        }
        match self.names.get(usize::from(labels.method)) {
            Some(name) => Cow::Borrowed(name.get_or_init(|| {
                Box::leak(format!("{method} {}", route.as_str()).into_boxed_str())
            })),
            None => Cow::Owned(format!("{method} {}", route.as_str())),
        }
    }
}

/// Shares route templates between requests: the first request of a route allocates its
/// template once; every later one clones an `Arc`.
#[derive(Debug)]
pub(crate) struct RouteInterner {
    routes: RwLock<FastMap<Box<str>, Arc<Route>>>,
    unmatched: Arc<Route>,
}

impl Default for RouteInterner {
    fn default() -> Self {
        Self {
            routes: RwLock::default(),
            unmatched: Arc::new(Route {
                value: None,
                cached: true,
                ..Route::default()
            }),
        }
    }
}

/// At most this many distinct templates are kept; a router has far fewer routes.
const MAX_INTERNED_ROUTES: usize = 4096;

impl RouteInterner {
    /// The shared entry of `route` (`None`: no route matched).
    pub(crate) fn route(&self, route: Option<&str>) -> Arc<Route> {
        let Some(route) = route else {
            return Arc::clone(&self.unmatched);
        };
        if let Ok(routes) = self.routes.read() {
            if let Some(shared) = routes.get(route) {
                return Arc::clone(shared);
            }
        }
        let mut entry = Route {
            value: Some(StringValue::from(Arc::<str>::from(route))),
            ..Route::default()
        };
        if let Ok(mut routes) = self.routes.write() {
            if let Some(shared) = routes.get(route) {
                return Arc::clone(shared);
            }
            if routes.len() < MAX_INTERNED_ROUTES {
                entry.cached = true;
                let shared = Arc::new(entry);
                routes.insert(Box::from(route), Arc::clone(&shared));
                return shared;
            }
        }
        Arc::new(entry)
    }

    #[cfg(test)]
    pub(crate) fn intern(&self, route: &str) -> StringValue {
        self.route(Some(route))
            .value()
            .cloned()
            .unwrap_or_else(|| StringValue::from(""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interned_routes_share_one_allocation() {
        let interner = RouteInterner::default();
        let a = interner.intern("/users/{id}");
        let b = interner.intern("/users/{id}");
        assert_eq!(a.as_str().as_ptr(), b.as_str().as_ptr());
    }
}
