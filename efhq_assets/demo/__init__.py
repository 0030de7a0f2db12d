"""The offline demo, outside the core library: `corpus` synthesizes the demo's videos and annotations from face
photos shipped in installed packages, `segments` renders its clips frame by frame, and `face_render` is the
head-turn renderer with exact yaw/pitch/roll ("face profiling") that the demo and benchmarks/pose_accuracy.py
use as ground truth. It imports `efhq_assets.core`; core never imports it.
"""
