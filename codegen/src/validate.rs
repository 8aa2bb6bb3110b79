//! Cross-validation of the parsed catalog, and resolution into the flat [`Catalog`] that
//! `generate.rs` emits.
//!
//! Checks: provider names and env var names are well-formed and unique; base URLs parse as
//! http(s) without a trailing slash; keyed auth names its env var; every accepted model spelling
//! (alias, id, `provider-id`, `provider/id`, `provider-alias`, `provider/alias`, all lower-cased)
//! maps to exactly one model; alias targets exist; every model has exactly one price and no price
//! names an unknown model; rates are finite and non-negative; tiers ascend. Every problem is
//! reported (not only the first), each located in its file where the text allows.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;

use crate::schema::{
    AuthStyle, CacheMultipliers, MaxTokensField, Model, Param, Price, PricingFile, Provider,
    ProvidersFile, QuirksSpec, SystemPrompt,
};
use crate::{Error, Sources};

/// The validated catalog, flattened for code generation. Models are in file order; indexes into
/// `models` become `ModelId`s.
#[derive(Debug, Clone)]
pub struct Catalog {
    /// Providers in file order (models moved out into `models`).
    pub providers: Vec<Provider>,
    /// Every model with its provider index, aliases, merged quirks and resolved price.
    pub models: Vec<ResolvedModel>,
    /// Every accepted lower-case spelling and the model index it resolves to, sorted.
    pub spellings: Vec<(String, usize)>,
    /// `source:` line of pricing.yaml.
    pub pricing_source: String,
}

/// A model after validation.
#[derive(Debug, Clone)]
pub struct ResolvedModel {
    /// Index into `Catalog::providers`.
    pub provider: usize,
    /// The model as written.
    pub spec: Model,
    /// Aliases pointing at it, as written.
    pub aliases: Vec<String>,
    /// Provider quirks overridden by model quirks.
    pub quirks: ResolvedQuirks,
    /// Absolute rates (USD per 1M tokens; request fee in USD).
    pub price: ResolvedPrice,
    /// Name of its `ModelId` enum variant: provider and id in CamelCase (`OpenaiGpt4o`).
    pub variant: String,
}

/// CamelCase of `name`, splitting at every non-alphanumeric character (`gpt-4o` -> `Gpt4o`).
pub fn camel(name: &str) -> String {
    name.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|s| !s.is_empty())
        .map(|s| {
            let mut c = s.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// Quirks with every field decided.
#[derive(Debug, Clone)]
pub struct ResolvedQuirks {
    pub max_tokens_field: MaxTokensField,
    pub default_max_tokens: Option<u32>,
    pub system_prompt: SystemPrompt,
    pub drop_params: Vec<Param>,
    pub rename_params: Vec<(Param, String)>,
}

/// Price with the cache defaults applied.
#[derive(Debug, Clone)]
pub struct ResolvedPrice {
    pub input: f64,
    pub output: f64,
    pub cache_read: f64,
    pub cache_write: f64,
    /// 1-hour cache writes (explicit, else provider multiplier x input, else `cache_write`).
    pub cache_write_1h: f64,
    pub request_fee: f64,
    /// Search fee per request, USD, by context size `[low, medium, high]` (zeros: none).
    pub search_fees: [f64; 3],
    /// `(above_prompt_tokens, input, output, cache_read)`, ascending.
    pub tiers: Vec<(u64, f64, f64, f64)>,
}

struct Diag<'a> {
    file: &'a str,
    lines: Lines<'a>,
    errors: Vec<Error>,
}

impl Diag<'_> {
    /// Record an error at a 1-based `(line, column)` when known.
    fn err(&mut self, entry: String, location: Option<(usize, usize)>, message: String) {
        self.errors.push(Error {
            file: self.file.to_string(),
            location,
            entry: Some(entry),
            message,
        });
    }
}

/// Finds entries in a YAML text by line, so a diagnostic points at the entry it is about (the
/// second of two duplicate providers, not the first). Block-style YAML is located precisely;
/// anything else falls back to a plain text search, and at worst to no location.
struct Lines<'a> {
    lines: Vec<&'a str>,
}

impl<'a> Lines<'a> {
    fn new(text: &'a str) -> Self {
        Self {
            lines: text.lines().collect(),
        }
    }

    fn all(&self) -> Range<usize> {
        0..self.lines.len()
    }

    /// Line `i` without its comment (a `#` at the start or after a space).
    fn code(&self, i: usize) -> &'a str {
        let line = self.lines.get(i).copied().unwrap_or("");
        if line.trim_start().starts_with('#') {
            return "";
        }
        line.split(" #").next().unwrap_or(line)
    }

    fn indent(&self, i: usize) -> usize {
        let code = self.code(i);
        code.len() - code.trim_start().len()
    }

    /// First line in `range` (0-based indexes) holding the mapping key `key` (plain or quoted,
    /// after any `- ` list markers), whose value is `value` (quotes ignored) when given.
    /// Returns the 1-based line and the 1-based column of the key.
    fn key(&self, range: Range<usize>, key: &str, value: Option<&str>) -> Option<(usize, usize)> {
        let forms = [key.to_string(), format!("\"{key}\""), format!("'{key}'")];
        range.into_iter().find_map(|i| {
            let code = self.code(i);
            let mut rest = code.trim_start();
            while let Some(r) = rest.strip_prefix("- ") {
                rest = r.trim_start();
            }
            let col = code.len() - rest.len() + 1;
            let after = forms.iter().find_map(|f| rest.strip_prefix(f.as_str()))?;
            let after = after.strip_prefix(':')?;
            if !(after.is_empty() || after.starts_with([' ', '\t'])) {
                return None;
            }
            let v = after.trim();
            let unquoted = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(v);
            match value {
                Some(want) if unquoted != want => None,
                _ => Some((i + 1, col)),
            }
        })
    }

    /// First occurrence of `needle` in the code of `range`: 1-based line and column.
    fn find(&self, range: Range<usize>, needle: &str) -> Option<(usize, usize)> {
        range
            .into_iter()
            .find_map(|i| self.code(i).find(needle).map(|c| (i + 1, c + 1)))
    }

    /// The lines under the top-level key `key:` (up to the next top-level key); the whole text
    /// when there is no such key.
    fn section(&self, key: &str) -> Range<usize> {
        let Some((line, 1)) = self.key(self.all(), key, None) else {
            return self.all();
        };
        let end = (line..self.lines.len())
            .find(|&i| {
                let code = self.code(i);
                !code.trim().is_empty() && !code.starts_with([' ', '\t', '-'])
            })
            .unwrap_or(self.lines.len());
        line..end
    }

    /// The entry starting on 1-based line `line` and every following line indented deeper
    /// (its nested fields), as 0-based indexes.
    fn block(&self, line: usize) -> Range<usize> {
        let start = line.saturating_sub(1);
        let indent = self.indent(start);
        let end = (line..self.lines.len())
            .find(|&i| !self.code(i).trim().is_empty() && self.indent(i) <= indent)
            .unwrap_or(self.lines.len());
        start..end
    }

    /// The line of `field:` inside the entry at `at` (its own line for a flow mapping), else `at`.
    fn field(&self, at: Option<(usize, usize)>, field: &str) -> Option<(usize, usize)> {
        let (line, _) = at?;
        let block = self.block(line);
        self.key(block.clone(), field, None)
            .or_else(|| self.find(block, &format!("{field}:")))
            .or(at)
    }
}

/// 1-based line and column of the first occurrence of `needle` in `text`, comments skipped:
/// the fallback when an entry is not written in block style.
fn locate(lines: &Lines<'_>, needle: &str) -> Option<(usize, usize)> {
    lines.find(lines.all(), needle)
}

fn is_ident(s: &str, upper: bool) -> bool {
    !s.is_empty()
        && s.chars().all(|c| {
            c.is_ascii_digit()
                || c == '_'
                || if upper {
                    c.is_ascii_uppercase()
                } else {
                    c.is_ascii_lowercase()
                }
        })
        && !s.starts_with(|c: char| c.is_ascii_digit())
}

/// Validate and resolve. Returns every problem found in either file.
pub fn validate(
    src: &Sources<'_>,
    providers: ProvidersFile,
    pricing: PricingFile,
) -> Result<Catalog, Vec<Error>> {
    let mut pd = Diag {
        file: src.providers_name,
        lines: Lines::new(src.providers),
        errors: Vec::new(),
    };
    let mut rd = Diag {
        file: src.pricing_name,
        lines: Lines::new(src.pricing),
        errors: Vec::new(),
    };

    // Where each provider and model is written: searched in file order, so the second of two
    // equal names is found on its own line.
    let providers_section = pd.lines.section("providers");
    let mut provider_at: Vec<Option<(usize, usize)>> = Vec::new();
    let mut model_at: Vec<Vec<Option<(usize, usize)>>> = Vec::new();
    let mut from = providers_section.start;
    for p in &providers.providers {
        let range = from..providers_section.end;
        let at = pd
            .lines
            .key(range, "name", Some(&p.name))
            .or_else(|| locate(&pd.lines, &format!("name: {}", p.name)));
        if let Some((line, _)) = at {
            from = line;
        }
        let mut models_at = Vec::new();
        let mut mfrom = from;
        for m in &p.models {
            let range = mfrom..providers_section.end;
            let mat = pd
                .lines
                .key(range, "id", Some(&m.id))
                .or_else(|| locate(&pd.lines, &format!("id: {}", m.id)));
            if let Some((line, _)) = mat {
                mfrom = line;
            }
            models_at.push(mat);
        }
        provider_at.push(at);
        model_at.push(models_at);
    }

    // Providers.
    let mut seen_providers: HashMap<String, usize> = HashMap::new();
    for (i, p) in providers.providers.iter().enumerate() {
        let entry = format!("providers[{}]", p.name);
        let at = provider_at[i];
        if !is_ident(&p.name, false) {
            pd.err(
                entry.clone(),
                at,
                format!("provider name \"{}\" must match [a-z][a-z0-9_]*", p.name),
            );
        }
        if let Some(first) = seen_providers.get(&p.name) {
            let first_line = provider_at[*first]
                .map(|(l, _)| format!(" (first defined on line {l})"))
                .unwrap_or_default();
            pd.err(
                entry.clone(),
                at,
                format!("duplicate provider \"{}\"{first_line}", p.name),
            );
        } else {
            seen_providers.insert(p.name.clone(), i);
        }
        let base_url_at = pd.lines.field(at, "base_url");
        match url::Url::parse(&p.base_url) {
            Ok(u) if u.scheme() != "http" && u.scheme() != "https" => pd.err(
                entry.clone(),
                base_url_at,
                format!(
                    "base_url \"{}\" must be http or https, not {}",
                    p.base_url,
                    u.scheme()
                ),
            ),
            Ok(_) if p.base_url.ends_with('/') => pd.err(
                entry.clone(),
                base_url_at,
                format!(
                    "base_url \"{}\" must not end with '/' (paths are appended to it)",
                    p.base_url
                ),
            ),
            Ok(_) => {}
            Err(e) => pd.err(
                entry.clone(),
                base_url_at,
                format!(
                    "base_url \"{}\" is not an absolute URL: {e} (write it as https://host/path)",
                    p.base_url
                ),
            ),
        }
        match (&p.auth, &p.api_key_env) {
            (AuthStyle::None, Some(_)) => pd.err(
                entry.clone(),
                pd.lines.field(at, "api_key_env"),
                "api_key_env is set but auth is none".into(),
            ),
            (AuthStyle::None, None) => {}
            (_, None) => pd.err(
                entry.clone(),
                pd.lines.field(at, "auth"),
                "auth sends an API key, so api_key_env must name the variable that holds it".into(),
            ),
            (_, Some(var)) if !is_ident(var, true) => pd.err(
                entry.clone(),
                pd.lines.field(at, "api_key_env"),
                format!("api_key_env \"{var}\" must match [A-Z][A-Z0-9_]*"),
            ),
            _ => {}
        }
        for var in &p.api_key_env_alternatives {
            if p.api_key_env.is_none() || !is_ident(var, true) {
                pd.err(
                    entry.clone(),
                    pd.lines.field(at, "api_key_env_alternatives"),
                    format!(
                        "api_key_env_alternatives \"{var}\" must match [A-Z][A-Z0-9_]* and needs api_key_env"
                    ),
                );
            }
        }
        if p.models.is_empty() {
            pd.err(
                entry.clone(),
                pd.lines.field(at, "models"),
                "provider has no models".into(),
            );
        }
    }

    // Models, flattened, and the spelling table.
    let mut models: Vec<(usize, Model)> = Vec::new();
    let mut models_loc: Vec<Option<(usize, usize)>> = Vec::new();
    let mut by_key: HashMap<String, usize> = HashMap::new(); // "provider/id" (lower) -> model index
    let mut spellings: BTreeMap<String, (usize, String)> = BTreeMap::new(); // spelling -> (model, origin)
    let mut add_spelling = |pd: &mut Diag<'_>,
                            spelling: String,
                            model: usize,
                            origin: String,
                            at: Option<(usize, usize)>| {
        if let Some((other, other_origin)) = spellings.get(&spelling) {
            // The same spelling reaching the same model twice (alias `compound` for id
            // `groq/compound` gives `groq/compound` both ways) is harmless.
            if *other != model {
                pd.err(
                    origin.clone(),
                    at,
                    format!("name \"{spelling}\" is ambiguous: it already names {other_origin}"),
                );
            }
        } else {
            spellings.insert(spelling, (model, origin));
        }
    };
    let mut variants: HashMap<String, String> = HashMap::new();
    for (pi, p) in providers.providers.iter().enumerate() {
        for (mi, m) in p.models.iter().enumerate() {
            let idx = models.len();
            let entry = format!("providers[{}].models[{}]", p.name, m.id);
            let at = model_at[pi][mi];
            let variant = camel(&p.name) + &camel(&m.id);
            if let Some(other) = variants.insert(variant.clone(), entry.clone())
                && other != entry
            {
                pd.err(
                    entry.clone(),
                    at,
                    format!("model id \"{}\" gives the Rust name {variant}, as {other} does: ids must differ in more than punctuation", m.id),
                );
            }
            if m.id.trim().is_empty() || m.id.chars().any(char::is_whitespace) {
                pd.err(
                    entry.clone(),
                    at,
                    format!("model id \"{}\" must be non-empty without spaces", m.id),
                );
            }
            if m.context_length == 0 {
                pd.err(
                    entry.clone(),
                    pd.lines.field(at, "context_length"),
                    "context_length must be > 0".into(),
                );
            }
            let id = m.id.to_lowercase();
            let pname = p.name.to_lowercase();
            by_key.entry(format!("{pname}/{id}")).or_insert(idx);
            add_spelling(&mut pd, id.clone(), idx, entry.clone(), at);
            add_spelling(&mut pd, format!("{pname}-{id}"), idx, entry.clone(), at);
            add_spelling(&mut pd, format!("{pname}/{id}"), idx, entry.clone(), at);
            models.push((pi, m.clone()));
            models_loc.push(at);
        }
    }

    // `provider/id` of every model, for "did you mean" hints.
    let model_names: Vec<String> = models
        .iter()
        .map(|(pi, m)| format!("{}/{}", providers.providers[*pi].name, m.id))
        .collect();

    // Aliases, in file order so a duplicate is reported where it is written second.
    let aliases_section = pd.lines.section("aliases");
    let mut alias_list: Vec<_> = providers
        .aliases
        .iter()
        .map(|(alias, target)| {
            let at = pd
                .lines
                .key(aliases_section.clone(), alias, None)
                .or_else(|| locate(&pd.lines, &format!("{alias}:")));
            (at, alias, target)
        })
        .collect();
    alias_list.sort_by_key(|(at, _, _)| at.map_or(usize::MAX, |(l, _)| l));
    let mut aliases: Vec<Vec<String>> = vec![Vec::new(); models.len()];
    let mut alias_lower: HashMap<String, String> = HashMap::new();
    for (at, alias, target) in alias_list {
        let entry = format!("aliases.{alias}");
        let lower = alias.to_lowercase();
        if let Some(prev) = alias_lower.insert(lower.clone(), alias.clone()) {
            pd.err(
                entry.clone(),
                at,
                format!("alias \"{alias}\" duplicates \"{prev}\" (names are case-insensitive)"),
            );
            continue;
        }
        let Some(&idx) = by_key.get(&target.to_lowercase()) else {
            let hint = if target.contains('/') {
                ""
            } else {
                " (write it as provider/model-id)"
            };
            let suggestion = did_you_mean(target, &model_names);
            pd.err(
                entry,
                at,
                format!("alias points at unknown model \"{target}\"{hint}{suggestion}"),
            );
            continue;
        };
        let pname = providers.providers[models[idx].0].name.to_lowercase();
        add_spelling(&mut pd, lower.clone(), idx, entry.clone(), at);
        add_spelling(&mut pd, format!("{pname}-{lower}"), idx, entry.clone(), at);
        add_spelling(&mut pd, format!("{pname}/{lower}"), idx, entry.clone(), at);
        aliases[idx].push(alias.clone());
    }

    // Prices.
    let defaults_section = rd.lines.section("provider_defaults");
    for name in pricing.provider_defaults.keys() {
        if !seen_providers.contains_key(name) {
            let at = rd.lines.key(defaults_section.clone(), name, None);
            rd.err(
                format!("provider_defaults.{name}"),
                at,
                format!("unknown provider \"{name}\" (not in providers.yaml)"),
            );
        }
    }
    let prices_section = rd.lines.section("models");
    let mut prices: Vec<Option<ResolvedPrice>> = vec![None; models.len()];
    for (key, price) in &pricing.models {
        let entry = format!("models[\"{key}\"]");
        let at = rd
            .lines
            .key(prices_section.clone(), key, None)
            .or_else(|| locate(&rd.lines, &format!("{key}:")));
        let Some(&idx) = by_key.get(&key.to_lowercase()) else {
            rd.err(
                entry,
                at,
                format!(
                    "price for unknown model \"{key}\" (keys are provider/model-id from {}){}",
                    src.providers_name,
                    did_you_mean(key, &model_names)
                ),
            );
            continue;
        };
        if prices[idx].is_some() {
            rd.err(entry, at, format!("duplicate price for \"{key}\""));
            continue;
        }
        let pname = &providers.providers[models[idx].0].name;
        let defaults = pricing
            .provider_defaults
            .get(pname)
            .cloned()
            .unwrap_or_default();
        match resolve_price(price, &defaults) {
            Ok(p) => prices[idx] = Some(p),
            Err(e) => {
                // Point at the offending field inside the entry when it is written there.
                let block = at.map(|(line, _)| rd.lines.block(line));
                let field_at = block.and_then(|b| {
                    let text = match &e.value {
                        Some(v) => format!("{}: {v}", e.field),
                        None => format!("{}:", e.field),
                    };
                    rd.lines
                        .key(b.clone(), e.field, e.value.as_deref())
                        .or_else(|| rd.lines.find(b, &text))
                });
                rd.err(entry, field_at.or(at), e.message);
                // Priced, if wrongly: do not also report the model as unpriced.
                prices[idx] = Some(zero_price());
            }
        }
    }
    for (idx, (pi, m)) in models.iter().enumerate() {
        if prices[idx].is_none() {
            let p = &providers.providers[*pi];
            pd.err(
                format!("providers[{}].models[{}]", p.name, m.id),
                models_loc[idx],
                format!(
                    "model is not priced: add \"{}/{}\" to {}",
                    p.name, m.id, src.pricing_name
                ),
            );
        }
    }

    let mut errors = pd.errors;
    errors.extend(rd.errors);
    if !errors.is_empty() {
        return Err(errors);
    }

    let out_models = models
        .into_iter()
        .zip(prices)
        .zip(aliases)
        .map(|(((pi, spec), price), aliases)| {
            let quirks = merge_quirks(&providers.providers[pi].quirks, &spec.quirks);
            let variant = camel(&providers.providers[pi].name) + &camel(&spec.id);
            ResolvedModel {
                provider: pi,
                spec,
                aliases,
                quirks,
                price: price.unwrap_or_else(zero_price),
                variant,
            }
        })
        .collect();
    let mut out_providers = providers.providers;
    for p in &mut out_providers {
        p.models.clear();
    }
    Ok(Catalog {
        providers: out_providers,
        models: out_models,
        spellings: spellings.into_iter().map(|(s, (m, _))| (s, m)).collect(),
        pricing_source: pricing.source,
    })
}

/// `; did you mean "provider/id"?` for the known model name closest to `wrong` (at most two edits
/// away, or one a prefix of the other), else empty. Without a `/`, `wrong` is compared with the ids.
fn did_you_mean(wrong: &str, known: &[String]) -> String {
    let wrong = wrong.to_lowercase();
    known
        .iter()
        .filter_map(|name| {
            let lower = name.to_lowercase();
            let cand = if wrong.contains('/') {
                lower.as_str()
            } else {
                lower.split_once('/').map_or(lower.as_str(), |(_, id)| id)
            };
            let d = edit_distance(&wrong, cand);
            let close = d <= 2 || cand.starts_with(&wrong) || wrong.starts_with(cand);
            close.then_some((d, name))
        })
        .min()
        .map(|(_, name)| format!("; did you mean \"{name}\"?"))
        .unwrap_or_default()
}

/// Levenshtein distance in characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (row[j + 1] + 1)
                .min(row[j] + 1)
                .min(diag + usize::from(ca != *cb));
            diag = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

fn zero_price() -> ResolvedPrice {
    ResolvedPrice {
        input: 0.0,
        output: 0.0,
        cache_read: 0.0,
        cache_write: 0.0,
        cache_write_1h: 0.0,
        request_fee: 0.0,
        search_fees: [0.0; 3],
        tiers: Vec::new(),
    }
}

/// A wrong price: the message, and the field (with its value, for a tier) to point at.
struct PriceError {
    field: &'static str,
    value: Option<String>,
    message: String,
}

fn check_rate(field: &'static str, what: &str, v: f64) -> Result<f64, PriceError> {
    if v.is_finite() && v >= 0.0 {
        Ok(v)
    } else {
        Err(PriceError {
            field,
            value: None,
            message: format!("{what} must be a finite, non-negative USD amount, got {v}"),
        })
    }
}

fn resolve_price(p: &Price, d: &CacheMultipliers) -> Result<ResolvedPrice, PriceError> {
    let input = check_rate("input", "input", p.input)?;
    let output = check_rate("output", "output", p.output)?;
    let cache_read = check_rate(
        "cache_read",
        "cache_read",
        p.cache_read.unwrap_or(input * d.cache_read.unwrap_or(1.0)),
    )?;
    let cache_write = check_rate(
        "cache_write",
        "cache_write",
        p.cache_write
            .unwrap_or(input * d.cache_write.unwrap_or(1.0)),
    )?;
    let cache_write_1h = check_rate(
        "cache_write_1h",
        "cache_write_1h",
        p.cache_write_1h
            .or(d.cache_write_1h.map(|m| input * m))
            .unwrap_or(cache_write),
    )?;
    let request_fee = check_rate("request_fee", "request_fee", p.request_fee.unwrap_or(0.0))?;
    let search_fees = match &p.search_fees {
        None => [0.0; 3],
        Some(f) => [
            check_rate("search_fees", "search_fees.low", f.low)?,
            check_rate("search_fees", "search_fees.medium", f.medium)?,
            check_rate("search_fees", "search_fees.high", f.high)?,
        ],
    };
    let mut tiers = Vec::new();
    let mut last = 0u64;
    for t in &p.tiers {
        let here = |e: PriceError| PriceError {
            field: "above_prompt_tokens",
            value: Some(t.above_prompt_tokens.to_string()),
            message: e.message,
        };
        if t.above_prompt_tokens <= last {
            return Err(here(PriceError {
                field: "",
                value: None,
                message: format!(
                    "tiers must ascend by above_prompt_tokens (got {} after {last})",
                    t.above_prompt_tokens
                ),
            }));
        }
        last = t.above_prompt_tokens;
        let ti = check_rate("", "tier input", t.input).map_err(here)?;
        let to = check_rate("", "tier output", t.output).map_err(here)?;
        let tc = check_rate(
            "",
            "tier cache_read",
            t.cache_read.unwrap_or(ti * d.cache_read.unwrap_or(1.0)),
        )
        .map_err(here)?;
        tiers.push((t.above_prompt_tokens, ti, to, tc));
    }
    Ok(ResolvedPrice {
        input,
        output,
        cache_read,
        cache_write,
        cache_write_1h,
        request_fee,
        search_fees,
        tiers,
    })
}

fn merge_quirks(provider: &QuirksSpec, model: &QuirksSpec) -> ResolvedQuirks {
    let mut drop_params = model
        .drop_params
        .clone()
        .or_else(|| provider.drop_params.clone())
        .unwrap_or_default();
    drop_params.sort();
    drop_params.dedup();
    ResolvedQuirks {
        max_tokens_field: model
            .max_tokens_field
            .or(provider.max_tokens_field)
            .unwrap_or(MaxTokensField::MaxTokens),
        default_max_tokens: model.default_max_tokens.or(provider.default_max_tokens),
        system_prompt: model
            .system_prompt
            .or(provider.system_prompt)
            .unwrap_or(SystemPrompt::System),
        drop_params,
        rename_params: model
            .rename_params
            .clone()
            .or_else(|| provider.rename_params.clone())
            .unwrap_or_default()
            .into_iter()
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolved(price: &str, defaults: &str) -> ResolvedPrice {
        let p: Price = serde_yaml::from_str(price).unwrap();
        let d: CacheMultipliers = serde_yaml::from_str(defaults).unwrap();
        resolve_price(&p, &d).unwrap_or_else(|e| panic!("{}", e.message))
    }

    /// `cache_write_1h`: the model's own rate, else the provider multiplier x input, else the
    /// model's `cache_write` rate (so providers without 1-hour writes price them as any write).
    #[test]
    fn cache_write_1h_falls_back_to_multiplier_then_cache_write() {
        let own = resolved(
            "{input: 3.0, output: 15.0, cache_write: 3.75, cache_write_1h: 6.5}",
            "{cache_write_1h: 2.0}",
        );
        assert_eq!((own.cache_write, own.cache_write_1h), (3.75, 6.5));
        let by_multiplier = resolved(
            "{input: 3.0, output: 15.0, cache_write: 3.75}",
            "{cache_read: 0.1, cache_write: 1.25, cache_write_1h: 2.0}",
        );
        assert_eq!(
            (by_multiplier.cache_write, by_multiplier.cache_write_1h),
            (3.75, 6.0)
        );
        let as_write = resolved("{input: 3.0, output: 15.0, cache_write: 3.75}", "{}");
        assert_eq!(
            (as_write.cache_write, as_write.cache_write_1h),
            (3.75, 3.75)
        );
        let nothing = resolved("{input: 3.0, output: 15.0}", "{cache_write: 1.25}");
        assert_eq!((nothing.cache_write, nothing.cache_write_1h), (3.75, 3.75));
    }

    #[test]
    fn cache_write_1h_is_validated_like_the_other_rates() {
        let p: Price =
            serde_yaml::from_str("{input: 1.0, output: 1.0, cache_write_1h: -2.0}").unwrap();
        let e = resolve_price(&p, &CacheMultipliers::default())
            .err()
            .unwrap();
        assert_eq!(e.field, "cache_write_1h");
        assert!(
            e.message.contains("cache_write_1h must be"),
            "{}",
            e.message
        );
    }
}
