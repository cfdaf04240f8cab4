"""Audio stages on the stream's audio: speech denoise, hum and rumble removal, loudness, mixing.

Every stage reads the referenced audio block by block (bounded memory, any length), processes it
once into a FLAC file in the cache folder keyed by the audio chain's fingerprint, and hands on a
new :class:`~remaster.stream.AudioRef` to that file with the same ``offset`` and ``duration``, so
the audio stays exactly as long as, and in sync with, the video range. The file is made lazily:
only when something (the encoder, a preview, another audio stage's output) reads the ref's path.
"""
