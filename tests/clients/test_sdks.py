"""Real client SDKs against the built llm-relay binary.

Run by tests/sdk_clients.rs (via `bash tests/run.sh`), which starts the binary in front of a fake
OpenAI upstream replaying recorded traffic (tests/fixtures/openai/) and passes:

- LLM_RELAY_URL       the relay, e.g. http://127.0.0.1:PORT
- LLM_RELAY_EXPECTED  JSON with what the fixtures recorded (texts, usage) and what the catalog
                      lists (only OpenAI has a key), so nothing here duplicates a fixture;
                      under "instance", the names a fake Ollama server configured with
                      OLLAMA_INSTANCES exposes and what it answers (tests/fixtures/ollama/).

Each request carries a unique tag (`[oa-chat]` ...) in its prompt so the Rust side can find it
among the requests the fake upstream received and check what llm-relay sent there.
"""

import base64
import json
import os

import ollama
import openai
import pytest

URL = os.environ["LLM_RELAY_URL"]
EXPECTED = json.loads(os.environ["LLM_RELAY_EXPECTED"])
PNG_B64 = EXPECTED["png_base64"]  # a real 1x1 RGBA PNG
PNG = base64.b64decode(PNG_B64)
INSTANCE = EXPECTED["instance"]  # the discovered Ollama instance


@pytest.fixture(scope="module")
def oa():
    with openai.OpenAI(base_url=URL + "/v1", api_key="unused", max_retries=0, timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
def ol():
    with ollama.Client(host=URL, timeout=30) as c:
        yield c


def usage_of(name):
    return EXPECTED[name]["usage"]


# ---------------------------------------------------------------------------------------------
# openai SDK
# ---------------------------------------------------------------------------------------------


def test_openai_models_list(oa):
    all_models = list(oa.models.list())
    models = [m for m in all_models if m.owned_by != INSTANCE["name"]]
    ids = [m.id for m in models]
    assert sorted(ids) == sorted(EXPECTED["openai_models"])
    assert "gpt-4o" in ids and "o3-mini" in ids
    assert all(m.object == "model" and m.owned_by == "openai" for m in models)
    instance_ids = [m.id for m in all_models if m.owned_by == INSTANCE["name"]]
    assert sorted(instance_ids) == sorted(INSTANCE["openai_ids"])


def test_openai_models_retrieve(oa):
    m = oa.models.retrieve("gpt-4o")
    assert (m.id, m.object, m.owned_by) == ("gpt-4o", "model", "openai")
    # an alias resolves to its model
    assert oa.models.retrieve("chatgpt").id == "gpt-3.5-turbo"


def test_openai_chat_basic(oa):
    exp = EXPECTED["chat_basic"]
    r = oa.chat.completions.create(
        model="gpt-3.5-turbo",
        messages=[{"role": "user", "content": "[oa-chat] Hello, how are you?"}],
        max_tokens=50,
        temperature=0,
    )
    assert r.object == "chat.completion"
    assert r.model == "gpt-3.5-turbo"
    assert len(r.choices) == 1
    c = r.choices[0]
    assert c.message.role == "assistant"
    assert c.message.content == exp["content"]
    assert c.finish_reason == "stop"
    u = usage_of("chat_basic")
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (
        u["prompt_tokens"],
        u["completion_tokens"],
        u["total_tokens"],
    )


def test_openai_chat_stream_include_usage(oa):
    exp = EXPECTED["chat_stream"]
    chunks = list(
        oa.chat.completions.create(
            model="gpt-3.5-turbo",
            messages=[{"role": "user", "content": "[oa-stream] Count from 1 to 5"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks, "no chunks"
    assert all(ch.object == "chat.completion.chunk" for ch in chunks)
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == exp["text"]
    finishes = [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason]
    assert finishes == ["stop"]
    # The final chunk carries usage and no choices; the others carry no usage.
    last = chunks[-1]
    assert last.choices == []
    assert all(ch.usage is None for ch in chunks[:-1])
    u = usage_of("chat_stream")
    assert (last.usage.prompt_tokens, last.usage.completion_tokens, last.usage.total_tokens) == (
        u["prompt_tokens"],
        u["completion_tokens"],
        u["total_tokens"],
    )


def test_openai_stream_without_usage(oa):
    # No stream_options: the relay still asks the upstream for usage, but must not send the
    # client a usage chunk it did not request.
    chunks = list(
        oa.chat.completions.create(
            model="gpt-3.5-turbo",
            messages=[{"role": "user", "content": "[oa-stream-nousage] Count from 1 to 5"}],
            stream=True,
        )
    )
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks) == EXPECTED["chat_stream"]["text"]
    assert all(ch.choices and ch.usage is None for ch in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_openai_legacy_completions(oa):
    r = oa.completions.create(model="gpt-3.5-turbo", prompt="[oa-cmpl] Hello, how are you?", max_tokens=50)
    assert r.object == "text_completion"
    assert r.choices[0].text == EXPECTED["chat_basic"]["content"]
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.completion_tokens == usage_of("chat_basic")["completion_tokens"]
    chunks = list(
        oa.completions.create(
            model="gpt-3.5-turbo",
            prompt="[oa-cmpl-stream] Count from 1 to 5",
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].text for c in chunks if c.choices) == EXPECTED["chat_stream"]["text"]
    assert chunks[-1].choices == []
    assert chunks[-1].usage.total_tokens == usage_of("chat_stream")["total_tokens"]


def test_openai_image_data_url(oa):
    exp = EXPECTED["chat_image"]
    r = oa.chat.completions.create(
        model="gpt-4o",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "[oa-image] describe this image in detail"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64," + PNG_B64}},
                ],
            }
        ],
    )
    assert r.choices[0].message.content == exp["content"]
    assert r.usage.prompt_tokens == usage_of("chat_image")["prompt_tokens"]


def test_openai_reasoning_model(oa):
    exp = EXPECTED["o3_mini"]
    # max_tokens and temperature are what an older client sends; the relay must translate them
    # for a reasoning model (checked on the upstream side by sdk_clients.rs).
    r = oa.chat.completions.create(
        model="o3-mini",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "[oa-o3] hello"},
        ],
        max_tokens=100,
        temperature=0.3,
    )
    assert r.choices[0].message.content == exp["content"]
    u = usage_of("o3_mini")
    assert r.usage.completion_tokens == u["completion_tokens"]
    assert r.usage.prompt_tokens == u["prompt_tokens"]
    assert r.usage.completion_tokens_details.reasoning_tokens == exp["reasoning_tokens"]


def test_openai_responses_create(oa):
    # The Responses API over the same chat upstream (checked on the upstream side by
    # sdk_clients.rs: instructions as the system message, max_output_tokens as the limit).
    exp = EXPECTED["chat_basic"]
    r = oa.responses.create(
        model="gpt-3.5-turbo",
        instructions="Be brief.",
        input="[oa-resp] Hello, how are you?",
        max_output_tokens=50,
        metadata={"k": "v"},
        store=False,
    )
    assert r.object == "response"
    assert r.id.startswith("resp_")
    assert r.status == "completed"
    assert r.model == "gpt-3.5-turbo"
    assert r.output_text == exp["content"]
    assert [o.type for o in r.output] == ["message"]
    assert r.metadata == {"k": "v"}
    assert r.instructions == "Be brief."
    u = usage_of("chat_basic")
    assert (r.usage.input_tokens, r.usage.output_tokens, r.usage.total_tokens) == (
        u["prompt_tokens"],
        u["completion_tokens"],
        u["total_tokens"],
    )


def test_openai_responses_stream(oa):
    exp = EXPECTED["chat_stream"]
    events = list(
        oa.responses.create(
            model="gpt-3.5-turbo",
            input=[{"role": "user", "content": "[oa-resp-stream] Count from 1 to 5"}],
            stream=True,
        )
    )
    types = [e.type for e in events]
    assert types[:3] == ["response.created", "response.in_progress", "response.output_item.added"]
    assert types[-1] == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == exp["text"]
    final = events[-1].response
    assert final.status == "completed"
    assert final.output_text == exp["text"]
    u = usage_of("chat_stream")
    assert (final.usage.input_tokens, final.usage.output_tokens, final.usage.total_tokens) == (
        u["prompt_tokens"],
        u["completion_tokens"],
        u["total_tokens"],
    )


def test_openai_responses_previous_response_id_is_a_400(oa):
    with pytest.raises(openai.BadRequestError) as e:
        oa.responses.create(model="gpt-3.5-turbo", input="[oa-resp-prev] hi", previous_response_id="resp_1")
    assert "stateless" in str(e.value)


def test_openai_unknown_model(oa):
    with pytest.raises(openai.NotFoundError) as e:
        oa.chat.completions.create(
            model="no-such-model-xyz", messages=[{"role": "user", "content": "[oa-404] hi"}]
        )
    assert e.value.status_code == 404
    assert e.value.code == "model_not_found"
    assert "no-such-model-xyz" in e.value.message
    with pytest.raises(openai.NotFoundError):
        oa.models.retrieve("no-such-model-xyz")


# ---------------------------------------------------------------------------------------------
# ollama SDK
# ---------------------------------------------------------------------------------------------


def test_ollama_list(ol):
    all_models = ol.list().models
    models = [m for m in all_models if m.model not in INSTANCE["ollama_names"]]
    assert sorted(m.model for m in all_models if m.model in INSTANCE["ollama_names"]) == sorted(INSTANCE["ollama_names"])
    names = [m.model for m in models]
    assert sorted(names) == sorted(m + ":latest" for m in EXPECTED["openai_models"])
    assert all(n.endswith(":latest") and not n.endswith(":latest:latest") for n in names)
    assert all(m.digest and m.modified_at is not None for m in models)


@pytest.mark.parametrize("name", ["gpt-4o", "gpt-4o:latest"])
def test_ollama_show(ol, name):
    s = ol.show(name)
    assert {"completion", "tools", "vision"} <= set(s.capabilities)
    arch = s.modelinfo["general.architecture"]
    assert s.modelinfo[f"{arch}.context_length"] == EXPECTED["context_length"]["gpt-4o"]
    assert "thinking" in ol.show("o3-mini").capabilities


def test_ollama_chat(ol):
    exp = EXPECTED["chat_basic"]
    r = ol.chat(
        model="gpt-3.5-turbo:latest",
        messages=[{"role": "user", "content": "[ol-chat] Hello, how are you?"}],
        options={"temperature": 0, "num_predict": 50},
    )
    assert r.message.role == "assistant"
    assert r.message.content == exp["content"]
    assert r.done is True and r.done_reason == "stop"
    u = usage_of("chat_basic")
    assert (r.prompt_eval_count, r.eval_count) == (u["prompt_tokens"], u["completion_tokens"])


def test_ollama_chat_stream(ol):
    exp = EXPECTED["chat_stream"]
    parts = list(
        ol.chat(
            model="gpt-3.5-turbo",
            messages=[{"role": "user", "content": "[ol-stream] Count from 1 to 5"}],
            stream=True,
        )
    )
    assert len(parts) > 2
    assert "".join(p.message.content or "" for p in parts) == exp["text"]
    assert [p.done for p in parts] == [False] * (len(parts) - 1) + [True]
    last = parts[-1]
    assert last.done_reason == "stop"
    u = usage_of("chat_stream")
    assert (last.prompt_eval_count, last.eval_count) == (u["prompt_tokens"], u["completion_tokens"])


def test_ollama_generate(ol):
    r = ol.generate(model="gpt-3.5-turbo", prompt="[ol-gen] Hello, how are you?")
    assert r.response == EXPECTED["chat_basic"]["content"]
    assert r.done is True and r.done_reason == "stop"


def test_ollama_generate_stream(ol):
    parts = list(ol.generate(model="gpt-3.5-turbo", prompt="[ol-gen-stream] Count from 1 to 5", stream=True))
    assert "".join(p.response or "" for p in parts) == EXPECTED["chat_stream"]["text"]
    assert parts[-1].done is True


@pytest.mark.parametrize("image", [PNG, PNG_B64], ids=["bytes", "base64"])
def test_ollama_chat_image(ol, image):
    r = ol.chat(
        model="gpt-4o",
        messages=[{"role": "user", "content": "[ol-image] describe this image in detail", "images": [image]}],
    )
    assert r.message.content == EXPECTED["chat_image"]["content"]


def test_ollama_unknown_model(ol):
    for call in (
        lambda: ol.chat(model="no-such-model-xyz", messages=[{"role": "user", "content": "[ol-404] hi"}]),
        lambda: list(ol.chat(model="no-such-model-xyz", messages=[{"role": "user", "content": "hi"}], stream=True)),
        lambda: ol.generate(model="no-such-model-xyz", prompt="hi"),
        lambda: ol.show("no-such-model-xyz"),
    ):
        with pytest.raises(ollama.ResponseError) as e:
            call()
        assert e.value.status_code == 404
        assert "no-such-model-xyz" in e.value.error


# ---------------------------------------------------------------------------------------------
# a model discovered on an Ollama instance (OLLAMA_INSTANCES), through both SDKs
# ---------------------------------------------------------------------------------------------


def test_openai_sdk_with_an_instance_model(oa):
    namespaced = INSTANCE["name"] + "-llama3.2"
    m = oa.models.retrieve(namespaced)
    assert (m.id, m.owned_by) == (namespaced, INSTANCE["name"])
    exp = INSTANCE["complete"]
    # The bare name reaches the only instance that has it.
    r = oa.chat.completions.create(
        model="llama3.2", messages=[{"role": "user", "content": "[oa-inst] What is the capital of France?"}]
    )
    assert r.model == "llama3.2"
    assert r.choices[0].message.content == exp["content"]
    assert r.choices[0].finish_reason == "stop"
    assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (exp["prompt_tokens"], exp["completion_tokens"])
    exp = INSTANCE["stream"]
    chunks = list(
        oa.chat.completions.create(
            model=namespaced,
            messages=[{"role": "user", "content": "[oa-inst-stream] Count from 1 to 5"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == exp["text"]
    assert chunks[-1].usage.completion_tokens == exp["completion_tokens"]
    assert chunks[-1].usage.prompt_tokens == exp["prompt_tokens"]


def test_ollama_sdk_with_an_instance_model(ol):
    namespaced = INSTANCE["name"] + "-llama3.2:latest"
    listed = {m.model: m for m in ol.list().models}
    assert listed[namespaced].digest == INSTANCE["digest"]
    assert listed["llama3.2:latest"].details.parameter_size == INSTANCE["parameter_size"]
    s = ol.show(namespaced)
    assert "completion" in s.capabilities
    exp = INSTANCE["complete"]
    r = ol.chat(
        model="llama3.2:latest",
        messages=[{"role": "user", "content": "[ol-inst] What is the capital of France?"}],
        options={"temperature": 0},
    )
    assert r.message.content == exp["content"]
    assert r.message.thinking == exp["thinking"]
    assert r.done_reason == "stop"
    assert (r.prompt_eval_count, r.eval_count) == (exp["prompt_tokens"], exp["completion_tokens"])
    exp = INSTANCE["stream"]
    parts = list(
        ol.chat(
            model=INSTANCE["name"] + "-llama3.2",
            messages=[{"role": "user", "content": "[ol-inst-stream] Count from 1 to 5"}],
            stream=True,
        )
    )
    assert "".join(p.message.content or "" for p in parts) == exp["text"]
    assert parts[-1].done and (parts[-1].prompt_eval_count, parts[-1].eval_count) == (
        exp["prompt_tokens"],
        exp["completion_tokens"],
    )


def test_images_reach_an_instance_model_from_both_sdks(oa, ol):
    # Ollama servers take base64 `images` on the message: an OpenAI image part and an ollama
    # SDK image (bytes) both arrive that way (the Rust side checks the bodies the instance got).
    exp = INSTANCE["complete"]
    r = oa.chat.completions.create(
        model=INSTANCE["name"] + "-llama3.2",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "[oa-inst-img] What is this?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64," + PNG_B64}},
                ],
            }
        ],
    )
    assert r.choices[0].message.content == exp["content"]
    r = ol.chat(
        model=INSTANCE["name"] + "-llama3.2",
        messages=[{"role": "user", "content": "[ol-inst-img] What is this?", "images": [PNG]}],
    )
    assert r.message.content == exp["content"]


# ---------------------------------------------------------------------------------------------
# Embeddings (both SDKs; catalog model on the fake OpenAI upstream, and the Ollama instance)
# ---------------------------------------------------------------------------------------------


def test_openai_embeddings_base64_default_and_float(oa):
    exp = EXPECTED["embeddings"]
    # The SDK asks for base64 unless told otherwise, and decodes it to floats.
    r = oa.embeddings.create(model=exp["model"], input=["[oa-emb] first", "second"])
    assert r.object == "list" and r.model == exp["model"]
    assert [list(d.embedding) for d in r.data] == exp["vectors"]
    assert [d.index for d in r.data] == [0, 1]
    assert (r.usage.prompt_tokens, r.usage.total_tokens) == (exp["prompt_tokens"], exp["prompt_tokens"])
    r = oa.embeddings.create(model=exp["model"], input="[oa-emb-float] one", encoding_format="float")
    assert [list(d.embedding) for d in r.data] == exp["vectors"][:1]


def test_openai_embeddings_from_a_chat_model_is_a_400(oa):
    with pytest.raises(openai.BadRequestError) as e:
        oa.embeddings.create(model="gpt-4o", input="x", encoding_format="float")
    assert "not an embedding model" in str(e.value)


def test_ollama_embed_and_legacy_embeddings(ol):
    exp = EXPECTED["embeddings"]
    r = ol.embed(model=exp["model"], input=["[ol-emb] first", "second"])
    assert [list(v) for v in r.embeddings] == exp["vectors"]
    assert r.prompt_eval_count == exp["prompt_tokens"]
    r = ol.embeddings(model=exp["model"], prompt="[ol-emb-legacy] one")
    assert list(r.embedding) == exp["vectors"][0]


def test_ollama_embed_on_an_instance_model(ol):
    recorded = INSTANCE["embed"]
    r = ol.embed(model=INSTANCE["name"] + "-llama3.2", input="[ol-inst-emb] Hello world")
    assert [list(v) for v in r.embeddings] == recorded["embeddings"]
    assert r.prompt_eval_count == recorded["prompt_eval_count"]
    assert r.total_duration == recorded["total_duration"]
