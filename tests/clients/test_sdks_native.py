"""Real client SDKs against the built llm-relay binary, served by the native upstream dialects.

Run by tests/sdk_clients.rs (`python_sdks_through_anthropic_and_gemini_upstreams`, via
`bash tests/run.sh`), which starts the binary with only the Anthropic and Gemini providers keyed,
each pointed at a fake upstream replaying recorded traffic (tests/fixtures/anthropic, .../gemini),
and passes:

- LLM_RELAY_URL       the relay, e.g. http://127.0.0.1:PORT
- LLM_RELAY_EXPECTED  JSON with what each recording says (text, tool calls, token counts, read
                      from the recordings by tests/common/native.rs) and the model names.

Every prompt carries a tag (`[na-...]` Anthropic, `[ng-...]` Gemini) so the Rust side can find
what llm-relay sent upstream for it.
"""

import base64
import json
import os

import ollama
import openai
import pytest

URL = os.environ["LLM_RELAY_URL"]
EXPECTED = json.loads(os.environ["LLM_RELAY_EXPECTED"])
PNG_B64 = EXPECTED["png_base64"]
PNG = base64.b64decode(PNG_B64)
A = EXPECTED["anthropic"]
G = EXPECTED["gemini"]


@pytest.fixture(scope="module")
def oa():
    with openai.OpenAI(base_url=URL + "/v1", api_key="unused", max_retries=0, timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
def ol():
    with ollama.Client(host=URL, timeout=30) as c:
        yield c


def tool(name, props, required=()):
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": "a test tool",
            "parameters": {"type": "object", "properties": props, "required": list(required)},
        },
    }


ENTITY = tool("retrieve_entity_info", {"name": {"type": "string"}}, ["name"])
TEMPERATURE = tool("get_current_temperature", {"city": {"type": "string"}}, ["city"])
COUNTRY = tool("get_user_country", {})
FINAL = tool("final_result", {"city": {"type": "string"}, "country": {"type": "string"}})
GET_COUNTRY = tool("get_country", {})


def expected_calls(rec):
    return [(name, args) for name, args in rec["tools"]]


def openai_calls(message):
    return [(c.function.name, json.loads(c.function.arguments)) for c in message.tool_calls or []]


def collect(chunks):
    """Text, tool calls {index: [id, name, args]}, finish reasons and the last usage of a stream."""
    text, calls, finishes, usage = "", {}, [], None
    for ch in chunks:
        if ch.usage is not None:
            usage = ch.usage
        for c in ch.choices:
            text += c.delta.content or ""
            for t in c.delta.tool_calls or []:
                entry = calls.setdefault(t.index, [None, None, ""])
                if t.id:
                    entry[0] = t.id
                if t.function and t.function.name:
                    entry[1] = t.function.name
                if t.function and t.function.arguments:
                    entry[2] += t.function.arguments
            if c.finish_reason:
                finishes.append(c.finish_reason)
    return text, [calls[i] for i in sorted(calls)], finishes, usage


@pytest.mark.parametrize("up", [A, G], ids=["anthropic", "gemini"])
def test_openai_text(oa, up):
    tag = "[na-text]" if up is A else "[ng-text]"
    r = oa.chat.completions.create(model=up["model"], messages=[{"role": "user", "content": tag + " hi"}])
    assert r.choices[0].message.content == up["basic"]["text"]
    assert r.choices[0].finish_reason == "stop"
    assert [r.usage.prompt_tokens, r.usage.completion_tokens] == up["basic"]["usage"]
    assert r.usage.total_tokens == sum(up["basic"]["usage"])


@pytest.mark.parametrize("up", [A, G], ids=["anthropic", "gemini"])
def test_openai_stream(oa, up):
    tag = "[na-stream]" if up is A else "[ng-stream]"
    chunks = list(
        oa.chat.completions.create(
            model=up["model"],
            messages=[{"role": "user", "content": tag + " count"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text, calls, finishes, usage = collect(chunks)
    assert text == up["stream"]["text"]
    assert calls == [] and finishes == ["stop"]
    assert [usage.prompt_tokens, usage.completion_tokens] == up["stream"]["usage"]
    assert chunks[-1].choices == []


def test_openai_tools_anthropic(oa):
    msgs = [{"role": "user", "content": "[na-tools] Who is the youngest?"}]
    r = oa.chat.completions.create(model=A["model"], messages=msgs, tools=[ENTITY], tool_choice="auto")
    m = r.choices[0].message
    assert r.choices[0].finish_reason == "tool_calls"
    assert openai_calls(m) == expected_calls(A["tools"])
    assert m.content == A["tools"]["text"]
    assert all(c.id.startswith("toolu_") for c in m.tool_calls)
    msgs.append(m.model_dump(exclude_none=True))
    for c in m.tool_calls:
        msgs.append({"role": "tool", "tool_call_id": c.id, "content": "info about " + c.function.arguments})
    r2 = oa.chat.completions.create(model=A["model"], messages=msgs, tools=[ENTITY])
    assert r2.choices[0].message.content == A["tools_answer"]["text"]
    assert r2.choices[0].finish_reason == "stop"


def test_openai_tools_gemini(oa):
    msgs = [{"role": "user", "content": "[ng-tools] largest city?"}]
    r = oa.chat.completions.create(model=G["model"], messages=msgs, tools=[COUNTRY, FINAL], tool_choice="required")
    m = r.choices[0].message
    assert r.choices[0].finish_reason == "tool_calls"
    assert openai_calls(m) == expected_calls(G["tools"])
    msgs.append(m.model_dump(exclude_none=True))
    msgs.append({"role": "tool", "tool_call_id": m.tool_calls[0].id, "content": "Mexico"})
    r2 = oa.chat.completions.create(model=G["model"], messages=msgs, tools=[COUNTRY, FINAL], tool_choice="required")
    assert openai_calls(r2.choices[0].message) == expected_calls(G["tools_answer"])


@pytest.mark.parametrize("up", [A, G], ids=["anthropic", "gemini"])
def test_openai_stream_tools(oa, up):
    tag, tools = ("[na-stream-tools]", [TEMPERATURE]) if up is A else ("[ng-stream-tools]", [GET_COUNTRY])
    msgs = [{"role": "user", "content": tag + " call the tool"}]
    text, calls, finishes, _ = collect(
        oa.chat.completions.create(model=up["model"], messages=msgs, tools=tools, stream=True)
    )
    assert text == up["stream_tools"]["text"]
    assert [(name, json.loads(args)) for _, name, args in calls] == expected_calls(up["stream_tools"])
    assert finishes == ["tool_calls"]
    msgs.append(
        {
            "role": "assistant",
            "content": text or None,
            "tool_calls": [
                {"id": cid, "type": "function", "function": {"name": name, "arguments": args}}
                for cid, name, args in calls
            ],
        }
    )
    for cid, _, _ in calls:
        msgs.append({"role": "tool", "tool_call_id": cid, "content": "Mexico" if up is G else "18C"})
    text2, calls2, finishes2, _ = collect(
        oa.chat.completions.create(model=up["model"], messages=msgs, tools=tools, stream=True)
    )
    assert text2 == up["stream_tools_answer"]["text"]
    assert calls2 == [] and finishes2 == ["stop"]


@pytest.mark.parametrize("up", [A, G], ids=["anthropic", "gemini"])
def test_openai_image(oa, up):
    tag = "[na-image]" if up is A else "[ng-image]"
    content = [
        {"type": "text", "text": tag + " what is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + PNG_B64}},
    ]
    # The Anthropic recording is a stream, the Gemini one a complete answer.
    stream = up is A
    r = oa.chat.completions.create(model=up["model"], messages=[{"role": "user", "content": content}], stream=stream)
    text = collect(r)[0] if stream else r.choices[0].message.content
    assert text == up["image"]["text"]


@pytest.mark.parametrize("up", [A, G], ids=["anthropic", "gemini"])
def test_ollama_stream(ol, up):
    tag = "[na-ol-stream]" if up is A else "[ng-ol-stream]"
    parts = list(ol.chat(model=up["model"], messages=[{"role": "user", "content": tag + " count"}], stream=True))
    assert "".join(p.message.content or "" for p in parts) == up["stream"]["text"]
    assert [p.done for p in parts] == [False] * (len(parts) - 1) + [True]
    assert parts[-1].done_reason == "stop"
    assert [parts[-1].prompt_eval_count, parts[-1].eval_count] == up["stream"]["usage"]


def test_ollama_tools_anthropic(ol):
    msgs = [{"role": "user", "content": "[na-ol-tools] Who is the youngest?"}]
    r = ol.chat(model=A["model"], messages=msgs, tools=[ENTITY])
    calls = [(c.function.name, dict(c.function.arguments)) for c in r.message.tool_calls]
    assert calls == expected_calls(A["tools"])
    msgs.append(r.message)
    for name, args in calls:
        msgs.append({"role": "tool", "tool_name": name, "content": "info about " + json.dumps(args)})
    r2 = ol.chat(model=A["model"], messages=msgs, tools=[ENTITY])
    assert r2.message.content == A["tools_answer"]["text"]
    assert r2.done_reason == "stop"


def test_ollama_tools_gemini(ol):
    msgs = [{"role": "user", "content": "[ng-ol-tools] largest city?"}]
    r = ol.chat(model=G["model"], messages=msgs, tools=[COUNTRY, FINAL])
    calls = [(c.function.name, dict(c.function.arguments)) for c in r.message.tool_calls]
    assert calls == expected_calls(G["tools"])
    msgs.append(r.message)
    msgs.append({"role": "tool", "tool_name": calls[0][0], "content": "Mexico"})
    r2 = ol.chat(model=G["model"], messages=msgs, tools=[COUNTRY, FINAL])
    assert [(c.function.name, dict(c.function.arguments)) for c in r2.message.tool_calls] == expected_calls(
        G["tools_answer"]
    )


@pytest.mark.parametrize("up", [A, G], ids=["anthropic", "gemini"])
def test_ollama_image(ol, up):
    tag = "[na-ol-image]" if up is A else "[ng-ol-image]"
    msgs = [{"role": "user", "content": tag + " what is this?", "images": [PNG]}]
    if up is A:
        text = "".join(p.message.content or "" for p in ol.chat(model=up["model"], messages=msgs, stream=True))
    else:
        text = ol.chat(model=up["model"], messages=msgs).message.content
    assert text == up["image"]["text"]
