"""The official anthropic Python SDK against the built llm-relay binary.

Run by tests/anthropic_clients.rs (via `bash tests/run.sh`), which starts the binary in front of a
scripted fake OpenAI upstream (BIG_MODEL/SMALL_MODEL point there), a fake Gemini upstream and a
fake Ollama instance replaying recorded traffic, and passes:

- LLM_RELAY_URL       the relay, e.g. http://127.0.0.1:PORT
- LLM_RELAY_EXPECTED  JSON: what the scripted fake answers and what the recordings say.

Each request to the OpenAI fake carries a tag (`[an-create]` ...) in its prompt so the Rust side
can check what llm-relay sent upstream.
"""

import base64
import json
import os

import anthropic
import pytest

URL = os.environ["LLM_RELAY_URL"]
EXPECTED = json.loads(os.environ["LLM_RELAY_EXPECTED"])
# A real 1x1 RGBA PNG.
PNG_B64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Current weather for a city",
    "input_schema": {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
}


@pytest.fixture(scope="module")
def client():
    # x-api-key, as the SDK sends it (a usage tag for llm-relay).
    with anthropic.Anthropic(base_url=URL, api_key="anthropic-sdk-test", max_retries=0, timeout=30) as c:
        yield c


def user(text):
    return [{"role": "user", "content": text}]


def test_create_maps_claude_name_to_big_model(client):
    m = client.messages.create(model="claude-sonnet-4-5", max_tokens=100, messages=user("[an-create] hi"))
    assert m.type == "message" and m.role == "assistant"
    assert m.model == "claude-sonnet-4-5"
    assert m.id.startswith("msg_")
    assert [b.type for b in m.content] == ["text"]
    assert m.content[0].text == EXPECTED["hello"]
    assert m.stop_reason == "end_turn" and m.stop_sequence is None
    assert m.usage.input_tokens == EXPECTED["input_tokens"]
    assert m.usage.output_tokens == EXPECTED["output_tokens"]
    assert m.usage.cache_read_input_tokens == 0


def test_haiku_maps_to_small_model(client):
    m = client.messages.create(
        model="claude-haiku-4-5-20251001",
        max_tokens=100,
        system=[{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        messages=user("[an-haiku] hi"),
    )
    assert m.content[0].text == EXPECTED["hello"]


def test_stream_text(client):
    with client.messages.stream(model="claude-opus-4-1", max_tokens=100, messages=user("[an-stream] hi")) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text == EXPECTED["hello"]
    assert final.content[0].text == EXPECTED["hello"]
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == EXPECTED["output_tokens"]
    assert final.usage.input_tokens == EXPECTED["input_tokens"]


def test_raw_stream_event_sequence(client):
    events = list(
        client.messages.create(
            model="claude-sonnet-4-5", max_tokens=100, stream=True, messages=user("[an-raw] hi")
        )
    )
    kinds = [e.type for e in events]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert kinds[-2] == "message_delta"
    assert kinds.count("content_block_start") == kinds.count("content_block_stop") == 1
    assert events[0].message.usage.input_tokens > 0


def test_tool_use_round_trip(client):
    messages = user("[an-tools] What is the weather in Paris?")
    m = client.messages.create(model="claude-sonnet-4-5", max_tokens=200, tools=[WEATHER_TOOL], messages=messages)
    assert m.stop_reason == "tool_use"
    calls = [b for b in m.content if b.type == "tool_use"]
    assert len(calls) == 1
    assert calls[0].name == "get_weather" and calls[0].input == {"city": "Paris"}
    messages += [
        {"role": "assistant", "content": m.content},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": calls[0].id, "content": "18C and sunny"}]},
    ]
    m2 = client.messages.create(model="claude-sonnet-4-5", max_tokens=200, tools=[WEATHER_TOOL], messages=messages)
    assert m2.stop_reason == "end_turn"
    assert m2.content[0].text == f"{EXPECTED['final_prefix']} 18C and sunny"


def test_streamed_tool_use_input_arrives_as_json_deltas(client):
    with client.messages.stream(
        model="claude-sonnet-4-5",
        max_tokens=200,
        tools=[WEATHER_TOOL],
        tool_choice={"type": "tool", "name": "get_weather"},
        messages=user("[an-tools-stream] Weather?"),
    ) as s:
        events = list(s)
        final = s.get_final_message()
    assert any(e.type == "input_json" for e in events)
    calls = [b for b in final.content if b.type == "tool_use"]
    assert [c.input for c in calls] == [{"city": "Paris"}]
    assert final.stop_reason == "tool_use"


def test_image_base64(client):
    m = client.messages.create(
        model="claude-sonnet-4-5",
        max_tokens=50,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64}},
                    {"type": "text", "text": "[an-image] What is this?"},
                ],
            }
        ],
    )
    assert "1x1 image" in m.content[0].text


def test_count_tokens_estimate(client):
    small = client.messages.count_tokens(model="claude-sonnet-4-5", messages=user("hi"))
    big = client.messages.count_tokens(model="claude-sonnet-4-5", messages=user("word " * 1000), tools=[WEATHER_TOOL])
    assert 0 < small.input_tokens < big.input_tokens


def test_models_list_in_anthropic_shape(client):
    ids = [m.id for m in client.models.list()]
    assert EXPECTED["big"] in ids
    assert EXPECTED["ollama"]["model"] + ":latest" in ids or EXPECTED["ollama"]["model"] in ids


def test_unknown_model_is_not_found_error(client):
    with pytest.raises(anthropic.NotFoundError) as e:
        client.messages.create(model="no-such-model", max_tokens=5, messages=user("x"))
    assert e.value.status_code == 404
    assert e.value.body["type"] == "error"
    assert e.value.body["error"]["type"] == "not_found_error"
    # The SDK's request_id (from the request-id header) is the body's request_id.
    assert e.value.request_id.startswith("req_")
    assert e.value.body["request_id"] == e.value.request_id


def test_bad_request_is_invalid_request_error(client):
    with pytest.raises(anthropic.BadRequestError) as e:
        client.messages.create(model="claude-sonnet-4-5", max_tokens=5, messages=[])
    assert e.value.status_code == 400


def test_openai_shaped_tool_is_a_bad_request_naming_the_field(client):
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    with pytest.raises(anthropic.BadRequestError) as e:
        client.messages.create(
            model="claude-sonnet-4-5", max_tokens=5, messages=user("x"), tools=[tool]
        )
    assert e.value.type == "invalid_request_error"
    assert e.value.api_message.startswith("tools.0.input_schema: Field required")


@pytest.mark.parametrize("backend", ["gemini", "ollama"])
def test_native_backends_create(client, backend):
    b = EXPECTED[backend]
    m = client.messages.create(model=b["model"], max_tokens=300, messages=user("hi"))
    texts = "".join(x.text for x in m.content if x.type == "text")
    assert texts == b["complete"]["text"]
    assert m.usage.input_tokens == b["complete"]["input_tokens"]
    assert m.usage.output_tokens == b["complete"]["output_tokens"]
    if b["complete"].get("thinking"):
        thinking = [x.thinking for x in m.content if x.type == "thinking"]
        assert thinking == [b["complete"]["thinking"]]


@pytest.mark.parametrize("backend", ["gemini", "ollama"])
def test_native_backends_stream(client, backend):
    b = EXPECTED[backend]
    with client.messages.stream(model=b["model"], max_tokens=300, messages=user("hi")) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text == b["stream"]["text"]
    assert final.usage.output_tokens == b["stream"]["output_tokens"]
    assert final.usage.input_tokens == b["stream"]["input_tokens"]
