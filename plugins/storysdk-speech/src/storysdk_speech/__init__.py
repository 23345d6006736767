"""storysdk-speech: narration generators (Piper in a separate process, transformers TTS)."""
