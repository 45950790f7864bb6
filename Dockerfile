# The worker image (also used by `reco replay`). PyPI's Linux torch is the CUDA build (several GB, and what a
# GPU host's trainer uses); for a CPU-only image, point pip at a CPU wheel index with
# --build-arg PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu
FROM python:3.11-slim
ARG PIP_EXTRA_INDEX_URL=""
ENV PIP_EXTRA_INDEX_URL=${PIP_EXTRA_INDEX_URL} PYTHONUNBUFFERED=1
# /metrics/ and /health/ reachable from outside the container (probes, Prometheus); Faust's own table and
# router pages are off (stream_app/app.py), so the port serves no shopper's data
ENV RECO_WEB_BIND=0.0.0.0
# glibc keeps freed memory in the heap: scoring and fine-tuning reuse large temporaries (same values and
# reasons as MALLOC_ENV in stream_app/embedded.py, which the demo and the tests give their subprocesses)
ENV MALLOC_MMAP_THRESHOLD_=536870912 MALLOC_TRIM_THRESHOLD_=1073741824 MALLOC_TOP_PAD_=67108864
WORKDIR /app
RUN pip install --no-cache-dir "torch==2.13.0"
COPY pyproject.toml README.md LICENSE ./
COPY stream_app ./stream_app
COPY models ./models
COPY data/sample ./data/sample
RUN pip install --no-cache-dir .
ENTRYPOINT ["reco"]
CMD ["worker"]
