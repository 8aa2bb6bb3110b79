//! LiteLLM price JSON import (seed 002).
