"""The assistant: the LLM runtime (llama.cpp), embeddings, prompts, answers with citations, conversations."""
