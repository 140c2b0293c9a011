import numpy as np
import soundfile as sf

from avemo.audio import LogMel, extract_audio, fix_length


def test_extracts_16k_mono_speech_from_the_real_720p_files(hd_dir, tmp_path):
    for video in sorted(hd_dir.glob("01-*.mp4")):
        wav = tmp_path / f"{video.stem}.wav"
        result = extract_audio(video, wav, 16000)
        assert result.status == "ok", result.message
        samples, rate = sf.read(wav)
        assert rate == 16000 and samples.ndim == 1
        assert 3.0 < len(samples) / rate < 4.5
        assert result.rms_dbfs > -55


def test_video_only_files_with_silent_tracks_are_reported_silent(hd_dir, tmp_path):
    for video in sorted(hd_dir.glob("02-*.mp4")):
        result = extract_audio(video, tmp_path / "x.wav", 16000)
        assert result.status == "silent" and result.rms_dbfs < -80
        assert video.name in result.message
    assert not (tmp_path / "x.wav").exists()


def test_a_clip_without_audio_stream_is_reported_not_fatal(ffmpeg, tmp_path):
    video = tmp_path / "01-01-03-01-01-01-01.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=320x240:rate=25", "-t", "1", "-pix_fmt", "yuv420p", video)
    result = extract_audio(video, tmp_path / "a.wav", 16000)
    assert result.status == "no_audio" and video.name in result.message


def test_a_truncated_video_fails_with_its_name_and_writes_nothing(hd_dir, tmp_path):
    broken = tmp_path / "01-01-01-01-01-01-01.mp4"
    broken.write_bytes((hd_dir / broken.name).read_bytes()[:4000])
    result = extract_audio(broken, tmp_path / "b.wav", 16000)
    assert result.status == "failed" and str(broken) in result.message
    assert not list(tmp_path.glob("*.wav")) and not list(tmp_path.glob(".tmp-*"))


def test_log_mel_has_the_configured_shape():
    samples = fix_length(np.random.default_rng(0).standard_normal(20000).astype(np.float32), 48000, 8000)
    assert samples.shape == (48000,) and np.all(samples[12000:] == 0)
    spec = LogMel(16000, 64, 512, 10)(samples)
    assert spec.shape == (64, 301) and np.isfinite(spec).all()
