"""`avemo serve`: a local web page for avemo predict (docs/serve.md). FastAPI with a static page rather than
Gradio: no asset from a CDN and no analytics to switch off, a few small dependencies, and the page calls the
very functions of `avemo predict` instead of a demo framework's own pipeline. One job per module:

    cli     the command line: load the model once, bind 127.0.0.1 unless told otherwise, run uvicorn
    app     the FastAPI app: the page, uploads (size-limited, named by the server), downloads
    jobs    the bounded queue, one worker thread, a temporary folder per job removed when done
    work    one upload through avemo.predict's own functions: the answer, its rows, the annotated video
    view    what the page shows of an answer: label, bars, branch, notes, model card, timeline series
    static  the page: index.html, app.js, style.css (no external assets)
"""
