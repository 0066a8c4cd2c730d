"""Tiny Audio web app (placeholder until the full Gradio app lands): transcribe an uploaded or recorded clip."""

import argparse

import gradio as gr


def build_demo(model: str) -> gr.Blocks:
    from transformers import pipeline

    pipe = pipeline("automatic-speech-recognition", model=model, trust_remote_code=True, device="cpu")

    def transcribe(path):
        if path is None:
            raise gr.Error("No audio submitted: record or upload a clip first.")
        try:
            return pipe(path)["text"]
        except ValueError as err:
            raise gr.Error(str(err))

    with gr.Blocks(title="Tiny Audio") as demo:
        audio = gr.Audio(sources=["microphone", "upload"], type="filepath")
        text = gr.Textbox(label="Transcript")
        gr.Button("Transcribe").click(transcribe, audio, text, api_name="transcribe")
    return demo


if __name__ == "__main__":
    import tiny_audio

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=tiny_audio.DEFAULT_MODEL)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7860)
    args = parser.parse_args()
    build_demo(args.model).queue(default_concurrency_limit=2).launch(server_name=args.host, server_port=args.port)
