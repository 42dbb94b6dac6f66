"""The mini-world: small stand-ins for what the study needs and a laptop lacks.

``data`` builds a target dataset, its validation set and a noisy captioned pool (for
ImageNet and LAION) from scikit-learn's scanned digits; ``pretrain_clip`` and
``pretrain_diffusion`` train a tiny CLIP and a tiny Stable-Diffusion-architecture
pipeline on that pool (for OpenCLIP and Stable Diffusion), with the CLIP tokenizer that
``tokenizer`` builds offline. The mini-world rules run them as
``python -m augbench.miniworld.<module>``. They may use the study's library modules;
the study's modules never import the mini-world, so a run on real data does not depend on it.
"""
