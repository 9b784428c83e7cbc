"""`ijepa explore`."""

from __future__ import annotations

from pathlib import Path

import typer

from ijepa.cli import USER_ERRORS, app, console, fail


@app.command("explore")
def explore(
    checkpoint: Path | None = typer.Argument(None, help="Run dir or checkpoint with encoder, predictor and target_encoder; a Hugging Face/timm I-JEPA model or an encoder state dict (encoder only); omit for a random init"),
    images: Path | None = typer.Option(None, "--images", help="Folder of images to add to the page (and to the neighbour gallery)"),
    port: int = typer.Option(8765, "--port", help="Port on 127.0.0.1 (0 picks a free one)"),
    out: Path | None = typer.Option(None, "--out", help="Write the page as static HTML + PNGs to this folder (new or empty) instead of serving it"),
    force: bool = typer.Option(False, "--force", help="With --out: overwrite the files of a folder that is not empty"),
    fashion_mnist: int = typer.Option(48, "--fashion-mnist", help="How many Fashion-MNIST test images to show (0: none)"),
    draws: int = typer.Option(4, "--draws", help="With --out: pre-sampled mask draws per exported image"),
    config: Path | None = typer.Option(None, "--config", "-c", help="Random init only: the recipe to initialise (default: the Fashion-MNIST recipe)"),
    set_: list[str] = typer.Option([], "--set", help="Random init only: override a recipe key, e.g. --set data.crop_size=224"),
    device: str = typer.Option("auto", "--device", help="cpu, cuda, cuda:N or auto (CUDA when available), for the three networks"),
    decoder: Path | None = typer.Option(None, "--decoder", help="Pixel decoder (default: RUN/decoder if `ijepa decoder train RUN` made one)"),
    mae: Path | None = typer.Option(None, "--mae", help="An MAE run of the same grid: show its pixel reconstruction of the same blocks"),
    gallery: int = typer.Option(2000, "--gallery", help="Fashion-MNIST models: val images the neighbours are searched among"),
    num_heads: int | None = typer.Option(None, "--num-heads", help="Attention heads, only for a bare state dict of a non-standard width"),
) -> None:
    """Show how I-JEPA sees an image: masks, per-patch predictions, PCA colours, neighbours.

    Example: ijepa explore runs/fmnist_vit_tiny --out site
    """
    from ijepa.explore import export_static, make_server, open_explorer
    from ijepa.explore.export import check_out
    from ijepa.explore.server import address
    from ijepa.typedconfig import ConfigError

    try:
        if out is not None:
            check_out(out, force=force)  # before the model is built
        explorer = open_explorer(checkpoint, images=images, config=config, overrides=set_, device=device, fashion_mnist=fashion_mnist,
                                 decoder=decoder, mae=mae, gallery=gallery, num_heads=num_heads)
        if out is not None:
            print(export_static(explorer, out, draws=draws, console=console, force=force))
            return
    except (ConfigError, *USER_ERRORS) as e:
        fail(e)
    try:
        server = make_server(explorer, port)
    except OSError as e:  # port taken, permission denied
        fail(ValueError(f"--port {port}: {e.strerror or e}"))
    console.print(f"[bold]{explorer.model.label}[/] · Ctrl-C stops the server", highlight=False)
    print(address(server), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
