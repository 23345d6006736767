"""The hosted StoryDiffusion API's example client, pointed at a local ``storysdk serve``.

``POST /v1/storydiffusion`` is the StoryDiffusion plugin's endpoint: install the plugin
(``pip install -e plugins/storysdk-storydiffusion``) and storysdk's ``serve`` extra. Start the
server (tiny preset: random toy weights, so the panels are noise; ``--preset auto`` uses real
SDXL weights when they are on disk), then run this script::

    storysdk serve --preset tiny --api-key YOUR_API_KEY
    python examples/hosted_client.py --url http://127.0.0.1:8000/v1/storydiffusion --out comic.webp

The request is the hosted documentation's example, field for field (plugins/storysdk-storydiffusion/docs/storydiffusion-api.md).
At its 768x768 and 25 steps, the tiny preset takes a few minutes on a CPU;
``--small`` asks for 256x256 and 20 steps instead. Sending the same request again answers
from (or resumes in) the job folder the server keeps for it.
"""

from __future__ import annotations

import argparse
import os
import sys

import requests


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8000/v1/storydiffusion")
    parser.add_argument("--api-key", default=os.environ.get("STORYSDK_API_KEY", "YOUR_API_KEY"))
    parser.add_argument("--out", default="comic.webp", help="where to write the image")
    parser.add_argument("--small", action="store_true", help="256x256 frames and 20 steps (fast on a CPU)")
    args = parser.parse_args()

    api_key = args.api_key
    url = args.url

    # Prepare data and files
    data = {}
    files = {}

    data["seed"] = 42
    data["num_ids"] = 3
    data["sd_model"] = "Unstable"
    data["num_steps"] = 25
    # For parameter "ref_image", you can send a raw file or a URI (the hosted API does; storysdk
    # answers 422 "not supported yet"):
    # files['ref_image'] = open('IMAGE_PATH', 'rb')
    data["image_width"] = 768
    data["image_height"] = 768
    data["sa32_setting"] = 0.5
    data["sa64_setting"] = 0.5
    data["output_format"] = "webp"
    data["guidance_scale"] = 5
    data["output_quality"] = 80
    data["negative_prompt"] = (
        "bad anatomy, bad hands, missing fingers, extra fingers, three hands, three legs, bad arms, missing legs, "
        "missing arms, poorly drawn face, bad face, fused face, cloned face, three crus, fused feet, fused thigh, "
        "extra crus, ugly fingers, horn, cartoon, cg, 3d, unreal, animate, amputation, disconnected limbs"
    )
    data["character_description"] = "a man, wearing black suit"
    data["comic_description"] = (
        "at home, read new paper #at home, The newspaper says there is a treasure house in the forest.\n"
        "on the road, near the forest\n"
        "[NC] The car on the road, near the forest #He drives to the forest in search of treasure.\n"
        "[NC]A tiger appeared in the forest, at night \n"
        "very frightened, open mouth, in the forest, at night\n"
        "running very fast, in the forest, at night\n"
        "[NC] A house in the forest, at night #Suddenly, he discovers the treasure house!\n"
        "in the house filled with treasure, laughing, at night #He is overjoyed inside the house."
    )
    data["style_strength_ratio"] = 20
    data["style_name"] = "Disney Charactor"
    data["comic_style"] = "Classic Comic Style"
    if args.small:
        data.update(image_width=256, image_height=256, num_steps=20)

    headers = {"x-api-key": api_key}

    response = requests.post(url, data=data, files=files, headers=headers)
    if response.status_code != 200:
        print(f"Error: {response.status_code} {response.text}", file=sys.stderr)
        return 1
    with open(args.out, "wb") as f:
        f.write(response.content)
    print(f"{args.out}: {response.headers['content-type']}, {len(response.content)} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
