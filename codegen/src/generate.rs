//! Emits the catalog as Rust: `ProviderId` enum, `PROVIDERS`/`MODELS`/`PRICING`/`QUIRKS` static
//! tables, the `resolve` match and the per-provider dialect dispatch, formatted by prettyplease.
//!
//! The output is `include!`d inside `llm_relay::catalog::generated`, which brings the runtime types
//! (`ProviderInfo`, `ModelInfo`, `Pricing`, `Quirks`, ...) into scope with `use super::types::*`.
//! It holds no inner attributes (an `include!`d file may not).

use proc_macro2::{Literal, TokenStream};
use quote::{format_ident, quote};

use crate::schema::{
    AuthStyle, Capability, MaxTokensField, Param, SystemPrompt, UsageQuirk, WireFamily,
};
use crate::validate::{Catalog, camel};

fn f(v: f64) -> Literal {
    Literal::f64_unsuffixed(v)
}

fn wire(w: WireFamily) -> TokenStream {
    match w {
        WireFamily::OpenaiCompat => quote!(WireFamily::OpenaiCompat),
        WireFamily::Anthropic => quote!(WireFamily::Anthropic),
        WireFamily::Gemini => quote!(WireFamily::Gemini),
        WireFamily::Ollama => quote!(WireFamily::Ollama),
    }
}

fn auth(a: AuthStyle) -> TokenStream {
    match a {
        AuthStyle::Bearer => quote!(AuthStyle::Bearer),
        AuthStyle::XApiKey => quote!(AuthStyle::XApiKey),
        AuthStyle::XGoogApiKey => quote!(AuthStyle::XGoogApiKey),
        AuthStyle::None => quote!(AuthStyle::None),
    }
}

fn usage_quirk(q: UsageQuirk) -> TokenStream {
    match q {
        UsageQuirk::ReasoningOutsideCompletion => quote!(UsageQuirk::ReasoningOutsideCompletion),
    }
}

fn capability(c: Capability) -> TokenStream {
    match c {
        Capability::Vision => quote!(Capability::Vision),
        Capability::Tools => quote!(Capability::Tools),
        Capability::Reasoning => quote!(Capability::Reasoning),
        Capability::Embeddings => quote!(Capability::Embeddings),
        Capability::Search => quote!(Capability::Search),
    }
}

fn param(p: Param) -> TokenStream {
    let name = format_ident!("{}", camel(&format!("{p:?}")));
    quote!(Param::#name)
}

/// Integer literal without a type suffix (`128000`, not `128000u32`), for a readable file.
fn int(v: u64) -> Literal {
    Literal::u64_unsuffixed(v)
}

fn opt_u32(v: Option<u32>) -> TokenStream {
    match v {
        Some(n) => {
            let n = int(n.into());
            quote!(Some(#n))
        }
        None => quote!(None),
    }
}

/// Generate the formatted Rust source for a validated catalog.
pub fn generate(cat: &Catalog) -> String {
    let n_providers = cat.providers.len();
    let n_models = cat.models.len();
    let variants: Vec<_> = cat
        .providers
        .iter()
        .map(|p| format_ident!("{}", camel(&p.name)))
        .collect();
    let names: Vec<_> = cat.providers.iter().map(|p| p.name.as_str()).collect();
    let indexes: Vec<_> = (0..n_providers as u64).map(int).collect();

    let provider_rows = cat.providers.iter().zip(&variants).map(|(p, v)| {
        let (name, display, base_url) = (&p.name, &p.display_name, &p.base_url);
        let (w, a) = (wire(p.wire), auth(p.auth));
        let key = match &p.api_key_env {
            Some(k) => quote!(Some(#k)),
            None => quote!(None),
        };
        let alternatives = p.api_key_env_alternatives.iter();
        let base_env = format!("{}_BASE_URL", p.name.to_uppercase());
        let headers = p.headers.iter().map(|(k, v)| quote!((#k, #v)));
        let usage_quirks = p.usage_quirks.iter().map(|q| usage_quirk(*q));
        quote! {
            ProviderInfo {
                id: ProviderId::#v,
                name: #name,
                display_name: #display,
                wire: #w,
                base_url: #base_url,
                base_url_env: #base_env,
                auth: #a,
                api_key_env: #key,
                api_key_env_alternatives: &[#(#alternatives),*],
                headers: &[#(#headers),*],
                usage_quirks: &[#(#usage_quirks),*],
            }
        }
    });

    let model_rows = cat.models.iter().map(|m| {
        let v = &variants[m.provider];
        let s = &m.spec;
        let (id, family, desc, ctx) = (
            &s.id,
            &s.family,
            &s.description,
            int(s.context_length.into()),
        );
        let max_out = opt_u32(s.max_output_tokens);
        let caps = s.capabilities.iter().map(|c| capability(*c));
        let aliases = &m.aliases;
        quote! {
            ModelInfo {
                id: #id,
                provider: ProviderId::#v,
                family: #family,
                context_length: #ctx,
                max_output_tokens: #max_out,
                capabilities: &[#(#caps),*],
                description: #desc,
                aliases: &[#(#aliases),*],
            }
        }
    });

    let pricing_rows = cat.models.iter().map(|m| {
        let p = &m.price;
        let (i, o, cr, cw, fee) = (f(p.input), f(p.output), f(p.cache_read), f(p.cache_write), f(p.request_fee));
        let cw1h = f(p.cache_write_1h);
        let tiers = p.tiers.iter().map(|(above, ti, to, tc)| {
            let (above, ti, to, tc) = (int(*above), f(*ti), f(*to), f(*tc));
            quote!(PriceTier { above_prompt_tokens: #above, input: #ti, output: #to, cache_read: #tc })
        });
        let [sl, sm, sh] = p.search_fees.map(f);
        quote! {
            Pricing {
                input: #i, output: #o, cache_read: #cr, cache_write: #cw, cache_write_1h: #cw1h,
                request_fee: #fee,
                search_fees: SearchFees { low: #sl, medium: #sm, high: #sh },
                tiers: &[#(#tiers),*],
            }
        }
    });

    let quirk_rows = cat.models.iter().map(|m| {
        let q = &m.quirks;
        let mtf = match q.max_tokens_field {
            MaxTokensField::MaxTokens => quote!(MaxTokensField::MaxTokens),
            MaxTokensField::MaxCompletionTokens => quote!(MaxTokensField::MaxCompletionTokens),
        };
        let sp = match q.system_prompt {
            SystemPrompt::System => quote!(SystemPrompt::System),
            SystemPrompt::Developer => quote!(SystemPrompt::Developer),
            SystemPrompt::MergeIntoUser => quote!(SystemPrompt::MergeIntoUser),
        };
        let dmt = opt_u32(q.default_max_tokens);
        let drops = q.drop_params.iter().map(|p| param(*p));
        let renames = q.rename_params.iter().map(|(p, to)| {
            let p = param(*p);
            quote!((#p, #to))
        });
        quote! {
            Quirks {
                max_tokens_field: #mtf,
                default_max_tokens: #dmt,
                system_prompt: #sp,
                drop_params: &[#(#drops),*],
                rename_params: &[#(#renames),*],
            }
        }
    });

    // Group spellings by model so each model is one match arm with `|` patterns.
    let mut by_model: Vec<Vec<&str>> = vec![Vec::new(); n_models];
    for (s, m) in &cat.spellings {
        by_model[*m].push(s);
    }
    let model_variants: Vec<_> = cat
        .models
        .iter()
        .map(|m| format_ident!("{}", m.variant))
        .collect();
    let arms = by_model
        .iter()
        .zip(&model_variants)
        .map(|(ss, v)| quote!(#(#ss)|* => Some(ModelId::#v),));

    let dispatch = cat.providers.iter().zip(&variants).map(|(p, v)| {
        let module = match p.wire {
            WireFamily::OpenaiCompat => quote!(openai_compat::OpenAiCompat),
            WireFamily::Anthropic => quote!(anthropic::Anthropic),
            WireFamily::Gemini => quote!(gemini::Gemini),
            WireFamily::Ollama => quote!(ollama::Ollama),
        };
        quote!(ProviderId::#v => &crate::upstream::#module,)
    });

    let source = &cat.pricing_source;
    let n_providers_lit = int(n_providers as u64);
    let n_models_lit = int(n_models as u64);
    let file = quote! {
        /// Every provider in `providers.yaml`, in file order.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum ProviderId { #(#variants),* }

        impl ProviderId {
            /// All providers, in file order.
            pub const ALL: [ProviderId; #n_providers_lit] = [#(ProviderId::#variants),*];
            /// Lower-case name as written in `providers.yaml`.
            pub const fn name(self) -> &'static str {
                match self { #(ProviderId::#variants => #names),* }
            }
            /// Static facts about this provider.
            pub fn info(self) -> &'static ProviderInfo {
                match self { #(ProviderId::#variants => &PROVIDERS[#indexes]),* }
            }
        }

        /// Every model in `providers.yaml`, in file order (`<Provider><Id>` in CamelCase). The
        /// discriminant indexes `MODELS`, `PRICING` and `QUIRKS`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u16)]
        pub enum ModelId { #(#model_variants),* }

        impl ModelId {
            /// All models, in file order.
            pub const ALL: [ModelId; #n_models_lit] = [#(ModelId::#model_variants),*];
        }

        /// Provider table, indexed in `ProviderId` order.
        pub static PROVIDERS: [ProviderInfo; #n_providers_lit] = [#(#provider_rows),*];

        /// Model table, indexed by `ModelId as usize`.
        pub static MODELS: [ModelInfo; #n_models_lit] = [#(#model_rows),*];

        /// Prices per model (USD per 1M tokens; request fee in USD), from pricing.yaml.
        pub static PRICING: [Pricing; #n_models_lit] = [#(#pricing_rows),*];

        /// Where the prices come from (pricing.yaml `source:`).
        pub const PRICING_SOURCE: &str = #source;

        /// Resolved quirks per model (provider quirks overridden by model quirks).
        pub static QUIRKS: [Quirks; #n_models_lit] = [#(#quirk_rows),*];

        /// Prices of `model` (USD per 1M tokens; request fee in USD).
        pub fn pricing(model: ModelId) -> &'static Pricing {
            &PRICING[model as usize]
        }

        /// Request quirks of `model`.
        pub fn quirks(model: ModelId) -> &'static Quirks {
            &QUIRKS[model as usize]
        }

        /// Resolve a name: alias, model id, `provider-x` or `provider/x`. The name must already be
        /// lower-cased (`catalog::resolve` trims, lower-cases and strips `:latest` first).
        pub fn resolve(name: &str) -> Option<ModelId> {
            match name {
                #(#arms)*
                _ => None,
            }
        }

        /// The wire dialect implementation that serves `provider`.
        pub fn dialect(provider: ProviderId) -> &'static dyn crate::upstream::Dialect {
            match provider { #(#dispatch)* }
        }
    };
    let header =
        "// @generated from providers.yaml + pricing.yaml by llm-relay-codegen. Do not edit.\n\n";
    match syn::parse2::<syn::File>(file) {
        Ok(parsed) => format!("{header}{}", prettyplease::unparse(&parsed)),
        // Unreachable for validated input; keep the raw tokens so rustc reports the problem.
        Err(e) => format!("{header}compile_error!({:?});\n", e.to_string()),
    }
}
