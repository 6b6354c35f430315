"""Networks and the method's maths: backbones, CAM nets, RITC head and losses, CLIP/BLIP wrappers, IRN."""
