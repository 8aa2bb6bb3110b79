use llm_relay_codegen::{compile, Sources};

const P: &str = "providers:
  - name: acme
    display_name: Acme
    wire: openai_compat
    base_url: https://api.acme.test/v1
    auth: bearer
    api_key_env: ACME_API_KEY
    models:
      - id: rocket
        family: rocket
        context_length: 8192
        description: Rocket model
aliases:
  fast: acme/rocket
";
const R: &str = "source: test
models:
  acme/rocket: {input: 1.0, output: 2.0}
";

fn show(label: &str, p: &str, r: &str) {
    let src = Sources { providers_name: "providers.yaml", providers: p, pricing_name: "pricing.yaml", pricing: r };
    match compile(&src) {
        Ok(_) => println!("== {label}: OK"),
        Err(es) => { println!("== {label}:"); for e in es { println!("   {e}"); } }
    }
}

#[test]
fn scratch() {
    show("syn1", &P.replace("description: Rocket model", "description: Rocket: model"), R);
    show("syn2", &P.replace("    wire: openai_compat", "    wire: \"openai_compat"), R);
    show("syn3", &P.replace("    auth: bearer", "\tauth: bearer"), R);
    show("syn4", &P.replace("aliases:", "aliases: x\n  y: z"), R);
    let two = P.replace("aliases:", "  - name: beta\n    display_name: Beta\n    wire: anthropic\n    base_url: https://api.beta.test/v1\n    auth: x_api_key\n    api_key_env: BETA_KEY\n    models:\n      - id: rocket\n        family: rocket\n        context_length: 100\n        description: dup id\naliases:");
    show("sameid", &two, &format!("{R}  beta/rocket: {{input: 1, output: 1}}\n"));
    let dup = P.replace("aliases:", "  - name: acme\n    display_name: Acme2\n    wire: anthropic\n    base_url: https://api.beta.test/v1\n    auth: x_api_key\n    api_key_env: BETA_KEY\n    models:\n      - id: jet\n        family: rocket\n        context_length: 100\n        description: dup\naliases:");
    show("dupprov", &dup, &format!("{R}  acme/jet: {{input: 1, output: 1}}\n"));
    show("aliasunk", &P.replace("fast: acme/rocket", "fast: acme/rockt"), R);
    show("aliasunk2", &P.replace("fast: acme/rocket", "fast: rocket"), R);
    show("dupalias", &P.replace("fast: acme/rocket", "fast: acme/rocket\n  FAST: acme/rocket"), R);
    show("aliasid", &P.replace("fast: acme/rocket", "rocket: acme/rocket"), R);
    show("unpriced", P, "source: x\nmodels: {}\n");
    show("unkprice", P, &format!("{R}  acme/rockt: {{input: 1, output: 1}}\n"));
    show("tiers", P, "source: x\nmodels:\n  acme/rocket:\n    input: 1\n    output: 2\n    tiers:\n      - {above_prompt_tokens: 200000, input: 2, output: 4}\n      - {above_prompt_tokens: 100000, input: 3, output: 6}\n");
    show("pdef", P, &format!("source: x\nprovider_defaults:\n  acm: {{cache_read: 0.1}}\nmodels:\n  acme/rocket: {{input: 1, output: 2}}\n"));
}
