"""Pure integer geometry: sd-scripts' buckets, cell layouts, content-shaped frames, who shares a frame."""
