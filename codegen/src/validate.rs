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
    pub request_fee: f64,
    /// `(above_prompt_tokens, input, output, cache_read)`, ascending.
    pub tiers: Vec<(u64, f64, f64, f64)>,
}

struct Diag<'a> {
    file: &'a str,
    text: &'a str,
    errors: Vec<Error>,
}

impl Diag<'_> {
    /// Record an error, locating the first line that contains `needle` (if any).
    fn err(&mut self, entry: String, needle: Option<&str>, message: String) {
        let location = needle.and_then(|n| locate(self.text, n));
        self.errors.push(Error {
            file: self.file.to_string(),
            location,
            entry: Some(entry),
            message,
        });
    }
}

/// 1-based line and column of the first occurrence of `needle` in `text`.
fn locate(text: &str, needle: &str) -> Option<(usize, usize)> {
    text.lines().enumerate().find_map(|(i, line)| {
        // Skip comments so a mention in a comment does not win.
        let code = line.split(" #").next().unwrap_or(line);
        if code.trim_start().starts_with('#') {
            return None;
        }
        code.find(needle).map(|c| (i + 1, c + 1))
    })
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
        text: src.providers,
        errors: Vec::new(),
    };
    let mut rd = Diag {
        file: src.pricing_name,
        text: src.pricing,
        errors: Vec::new(),
    };

    // Providers.
    let mut seen_providers: HashMap<String, usize> = HashMap::new();
    for (i, p) in providers.providers.iter().enumerate() {
        let entry = format!("providers[{}]", p.name);
        let needle = format!("name: {}", p.name);
        if !is_ident(&p.name, false) {
            pd.err(
                entry.clone(),
                Some(&needle),
                format!("provider name \"{}\" must match [a-z][a-z0-9_]*", p.name),
            );
        }
        if seen_providers.insert(p.name.clone(), i).is_some() {
            pd.err(
                entry.clone(),
                Some(&needle),
                format!("duplicate provider \"{}\"", p.name),
            );
        }
        match url::Url::parse(&p.base_url) {
            Ok(u) if u.scheme() != "http" && u.scheme() != "https" => pd.err(
                entry.clone(),
                Some(&p.base_url),
                format!("base_url \"{}\" must be http or https", p.base_url),
            ),
            Ok(_) if p.base_url.ends_with('/') => pd.err(
                entry.clone(),
                Some(&p.base_url),
                format!("base_url \"{}\" must not end with '/'", p.base_url),
            ),
            Ok(_) => {}
            Err(e) => pd.err(
                entry.clone(),
                Some(&p.base_url),
                format!("bad base_url \"{}\": {e}", p.base_url),
            ),
        }
        match (&p.auth, &p.api_key_env) {
            (AuthStyle::None, Some(_)) => pd.err(
                entry.clone(),
                Some(&needle),
                "api_key_env is set but auth is none".into(),
            ),
            (AuthStyle::None, None) => {}
            (_, None) => pd.err(
                entry.clone(),
                Some(&needle),
                "auth needs a key: set api_key_env".into(),
            ),
            (_, Some(var)) if !is_ident(var, true) => pd.err(
                entry.clone(),
                Some(var),
                format!("api_key_env \"{var}\" must match [A-Z][A-Z0-9_]*"),
            ),
            _ => {}
        }
        if p.models.is_empty() {
            pd.err(
                entry.clone(),
                Some(&needle),
                "provider has no models".into(),
            );
        }
    }

    // Models, flattened, and the spelling table.
    let mut models: Vec<(usize, Model)> = Vec::new();
    let mut by_key: HashMap<String, usize> = HashMap::new(); // "provider/id" (lower) -> model index
    let mut spellings: BTreeMap<String, (usize, String)> = BTreeMap::new(); // spelling -> (model, origin)
    let mut add_spelling =
        |pd: &mut Diag<'_>, spelling: String, model: usize, origin: String, needle: &str| {
            if let Some((other, other_origin)) = spellings.get(&spelling) {
                // The same spelling reaching the same model twice (alias `compound` for id
                // `groq/compound` gives `groq/compound` both ways) is harmless.
                if *other != model {
                    pd.err(
                        origin.clone(),
                        Some(needle),
                        format!("name \"{spelling}\" is ambiguous: also {other_origin}"),
                    );
                }
            } else {
                spellings.insert(spelling, (model, origin));
            }
        };
    for (pi, p) in providers.providers.iter().enumerate() {
        for m in &p.models {
            let idx = models.len();
            let entry = format!("providers[{}].models[{}]", p.name, m.id);
            let needle = format!("id: {}", m.id);
            if m.id.trim().is_empty() || m.id.chars().any(char::is_whitespace) {
                pd.err(
                    entry.clone(),
                    Some(&needle),
                    format!("model id \"{}\" must be non-empty without spaces", m.id),
                );
            }
            if m.context_length == 0 {
                pd.err(
                    entry.clone(),
                    Some(&needle),
                    "context_length must be > 0".into(),
                );
            }
            let id = m.id.to_lowercase();
            let pname = p.name.to_lowercase();
            by_key.insert(format!("{pname}/{id}"), idx);
            add_spelling(&mut pd, id.clone(), idx, entry.clone(), &needle);
            add_spelling(
                &mut pd,
                format!("{pname}-{id}"),
                idx,
                entry.clone(),
                &needle,
            );
            add_spelling(
                &mut pd,
                format!("{pname}/{id}"),
                idx,
                entry.clone(),
                &needle,
            );
            models.push((pi, m.clone()));
        }
    }

    // Aliases.
    let mut aliases: Vec<Vec<String>> = vec![Vec::new(); models.len()];
    let mut alias_lower: HashMap<String, String> = HashMap::new();
    for (alias, target) in &providers.aliases {
        let entry = format!("aliases.{alias}");
        let needle = format!("{alias}:");
        let lower = alias.to_lowercase();
        if let Some(prev) = alias_lower.insert(lower.clone(), alias.clone()) {
            pd.err(
                entry.clone(),
                Some(&needle),
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
            pd.err(
                entry,
                Some(&needle),
                format!("alias points at unknown model \"{target}\"{hint}"),
            );
            continue;
        };
        let pname = providers.providers[models[idx].0].name.to_lowercase();
        add_spelling(&mut pd, lower.clone(), idx, entry.clone(), &needle);
        add_spelling(
            &mut pd,
            format!("{pname}-{lower}"),
            idx,
            entry.clone(),
            &needle,
        );
        add_spelling(
            &mut pd,
            format!("{pname}/{lower}"),
            idx,
            entry.clone(),
            &needle,
        );
        aliases[idx].push(alias.clone());
    }

    // Prices.
    for name in pricing.provider_defaults.keys() {
        if !seen_providers.contains_key(name) {
            rd.err(
                format!("provider_defaults.{name}"),
                Some(&format!("{name}:")),
                format!("unknown provider \"{name}\""),
            );
        }
    }
    let mut prices: Vec<Option<ResolvedPrice>> = vec![None; models.len()];
    for (key, price) in &pricing.models {
        let entry = format!("models[\"{key}\"]");
        let needle = format!("{key}:");
        let Some(&idx) = by_key.get(&key.to_lowercase()) else {
            rd.err(entry, Some(&needle), format!("price for unknown model \"{key}\" (keys are provider/model-id from providers.yaml)"));
            continue;
        };
        if prices[idx].is_some() {
            rd.err(
                entry,
                Some(&needle),
                format!("duplicate price for \"{key}\""),
            );
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
            Err(msg) => rd.err(entry, Some(&needle), msg),
        }
    }
    for (idx, (pi, m)) in models.iter().enumerate() {
        if prices[idx].is_none() {
            let p = &providers.providers[*pi];
            pd.err(
                format!("providers[{}].models[{}]", p.name, m.id),
                Some(&format!("id: {}", m.id)),
                format!(
                    "model is not priced: add \"{}/{}\" to pricing.yaml",
                    p.name, m.id
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
            ResolvedModel {
                provider: pi,
                spec,
                aliases,
                quirks,
                price: price.unwrap_or_else(zero_price),
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

fn zero_price() -> ResolvedPrice {
    ResolvedPrice {
        input: 0.0,
        output: 0.0,
        cache_read: 0.0,
        cache_write: 0.0,
        request_fee: 0.0,
        tiers: Vec::new(),
    }
}

fn check_rate(what: &str, v: f64) -> Result<f64, String> {
    if v.is_finite() && v >= 0.0 {
        Ok(v)
    } else {
        Err(format!(
            "{what} must be a finite, non-negative USD amount, got {v}"
        ))
    }
}

fn resolve_price(p: &Price, d: &CacheMultipliers) -> Result<ResolvedPrice, String> {
    let input = check_rate("input", p.input)?;
    let output = check_rate("output", p.output)?;
    let cache_read = check_rate(
        "cache_read",
        p.cache_read.unwrap_or(input * d.cache_read.unwrap_or(1.0)),
    )?;
    let cache_write = check_rate(
        "cache_write",
        p.cache_write
            .unwrap_or(input * d.cache_write.unwrap_or(1.0)),
    )?;
    let request_fee = check_rate("request_fee", p.request_fee.unwrap_or(0.0))?;
    let mut tiers = Vec::new();
    let mut last = 0u64;
    for t in &p.tiers {
        if t.above_prompt_tokens <= last {
            return Err(format!(
                "tiers must ascend by above_prompt_tokens (got {} after {last})",
                t.above_prompt_tokens
            ));
        }
        last = t.above_prompt_tokens;
        let ti = check_rate("tier input", t.input)?;
        let to = check_rate("tier output", t.output)?;
        let tc = check_rate(
            "tier cache_read",
            t.cache_read.unwrap_or(ti * d.cache_read.unwrap_or(1.0)),
        )?;
        tiers.push((t.above_prompt_tokens, ti, to, tc));
    }
    Ok(ResolvedPrice {
        input,
        output,
        cache_read,
        cache_write,
        request_fee,
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
