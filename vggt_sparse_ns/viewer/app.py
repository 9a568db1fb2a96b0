"""The viser scene and GUI for one SceneData: points, textured frustums, covisibility graph, camera selection."""

from __future__ import annotations

import base64
import io
import threading

import numpy as np
import viser
import viser.transforms as vtf
from PIL import Image

from vggt_sparse_ns.viewer.graph import edge_walks, neighbour_lists, star_walk
from vggt_sparse_ns.viewer.scene import SceneData, load_image
from vggt_sparse_ns.viewer.summary import summary_markdown

Colour = tuple[int, int, int]
FRUSTUM_COLOUR: Colour = (60, 60, 60)
SELECTED_COLOUR: Colour = (230, 30, 30)
NEIGHBOUR_COLOUR: Colour = (255, 150, 0)
GRAPH_COLOUR: Colour = (40, 110, 230)
SELECTED_IMAGE_SIZE = 320
SELECTION_HINT = "*Click a camera frustum to see its image and highlight its graph neighbours.*"


def _as_tuples(positions: np.ndarray) -> tuple[tuple[float, float, float], ...]:
    return tuple(map(tuple, positions.tolist()))


def _jpeg_data_url(image: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


class ReconstructionViewer:
    """Adds one reconstruction to a viser server and keeps the GUI and camera selection in sync."""

    def __init__(self, server: viser.ViserServer, scene: SceneData) -> None:
        self.server = server
        self.scene = scene
        self.selected: int | None = None
        count = len(scene.T_world_camera)
        edges = scene.edges if scene.edges is not None else np.zeros((0, 2), dtype=np.int64)
        self.neighbours = neighbour_lists(edges, count)
        self._wxyz = vtf.SO3.from_matrix(scene.T_world_camera[:, :3, :3]).wxyz
        self._highlighted: set[int] = set()
        self._selection_edges: viser.SceneNodeHandle | None = None
        self._lock = threading.Lock()

        server.scene.set_up_direction(scene.up_direction)
        self._build_gui()
        self._update_points()
        self._cameras = server.scene.add_frame("/cameras", show_axes=False)
        for index in range(count):
            self._add_frustum(index, FRUSTUM_COLOUR)
        self._graph = server.scene.add_frame("/graph", show_axes=False)
        for component, walk in enumerate(edge_walks(edges, count)):
            server.scene.add_spline_catmull_rom(
                f"/graph/component_{component}",
                positions=_as_tuples(scene.camera_centres[walk]),
                curve_type="catmullrom",
                tension=0.0,
                segments=len(walk) - 1,
                line_width=1.5,
                color=GRAPH_COLOUR,
            )
        server.on_client_connect(self._frame_scene)

    def _build_gui(self) -> None:
        gui, scene = self.server.gui, self.scene
        shown = f"{len(scene.points):,} of {scene.total_points:,}"
        edge_count = "no graph saved (dense attention)" if scene.edges is None else f"{len(scene.edges):,} graph edges"
        gui.add_markdown(f"**{len(scene.T_world_camera):,} cameras**, {shown} points, {edge_count}")
        with gui.add_folder("Display"):
            self.show_points = gui.add_checkbox("Points", initial_value=True)
            self.show_cameras = gui.add_checkbox("Cameras", initial_value=True)
            self.show_graph = gui.add_checkbox(
                "Covisibility graph",
                initial_value=scene.edges is not None,
                disabled=scene.edges is None,
                hint="Lines between cameras whose frames attended to each other",
            )
            extent = scene.scene_extent
            smallest, largest = extent * 1e-4, extent * 2e-2
            self.point_size = gui.add_slider(
                "Point size",
                min=smallest,
                max=largest,
                step=smallest,
                initial_value=extent * 2e-3,
                marks=((smallest, f"{smallest:.1g}"), (largest, f"{largest:.1g}")),
                hint="World units",
            )
            self.confidence_percentile = gui.add_slider(
                "Min confidence (percentile)",
                min=0.0,
                max=99.0,
                step=1.0,
                initial_value=0.0,
                visible=scene.confidences is not None,
                hint="Hide the points whose confidence is below this percentile",
            )
        with gui.add_folder("Selected camera"):
            self.selection_panel = gui.add_markdown(SELECTION_HINT, image_root=scene.output_dir)
        with gui.add_folder("Run summary"):
            gui.add_markdown(summary_markdown(scene.summary))

        self.show_points.on_update(lambda _: self._update_points())
        self.point_size.on_update(lambda _: self._update_points())
        self.confidence_percentile.on_update(lambda _: self._update_points())
        self.show_cameras.on_update(lambda _: setattr(self._cameras, "visible", self.show_cameras.value))
        self.show_graph.on_update(lambda _: setattr(self._graph, "visible", self.show_graph.value))

    def visible_point_mask(self) -> np.ndarray:
        """Points at or above the chosen confidence percentile (all points when the PLY has no confidences)."""
        confidences = self.scene.confidences
        if confidences is None or len(confidences) == 0 or self.confidence_percentile.value <= 0:
            return np.ones(len(self.scene.points), dtype=bool)
        return confidences >= np.percentile(confidences, self.confidence_percentile.value)

    def _update_points(self) -> None:
        """Re-sends the point cloud with the current filter, size and visibility (GUI callbacks run concurrently)."""
        with self._lock:
            mask = self.visible_point_mask()
            self.server.scene.add_point_cloud(
                "/points",
                points=self.scene.points[mask],
                colors=self.scene.colours[mask],
                point_size=float(self.point_size.value),
                point_shape="rounded",
                visible=self.show_points.value,
            )

    def _add_frustum(self, index: int, colour: Colour) -> None:
        scene = self.scene
        handle = self.server.scene.add_camera_frustum(
            f"/cameras/{index:05d}",
            fov=float(scene.vertical_fov[index]),
            aspect=float(scene.aspect[index]),
            scale=scene.frustum_scale,
            color=colour,
            image=scene.thumbnails[index],
            format="jpeg",
            jpeg_quality=85,
            wxyz=self._wxyz[index],
            position=scene.camera_centres[index],
        )
        handle.on_click(lambda _event: self.select(index))

    def select(self, index: int) -> None:
        """Highlights camera `index` and its graph neighbours, draws its edges and shows its image."""
        neighbours = self.neighbours[index]
        with self._lock:
            for previous in self._highlighted - {index, *neighbours.tolist()}:
                self._add_frustum(previous, FRUSTUM_COLOUR)
            for neighbour in neighbours:
                self._add_frustum(int(neighbour), NEIGHBOUR_COLOUR)
            self._add_frustum(index, SELECTED_COLOUR)
            self._highlighted = {index, *neighbours.tolist()}
            if self._selection_edges is not None:
                self._selection_edges.remove()
                self._selection_edges = None
            if len(neighbours):
                self._selection_edges = self.server.scene.add_spline_catmull_rom(
                    "/selection_edges",
                    positions=_as_tuples(self.scene.camera_centres[star_walk(index, neighbours)]),
                    curve_type="catmullrom",
                    tension=0.0,
                    segments=2 * len(neighbours),
                    line_width=3.0,
                    color=NEIGHBOUR_COLOUR,
                )
            self.selection_panel.content = self._selection_markdown(index)
            self.selected = index

    def _selection_markdown(self, index: int) -> str:
        scene, neighbours = self.scene, self.neighbours[index]
        names = ", ".join(scene.image_names[int(neighbour)] for neighbour in neighbours[:8])
        more = f" and {len(neighbours) - 8} more" if len(neighbours) > 8 else ""
        lines = [f"**{scene.image_names[index]}** (camera {index + 1} of {len(scene.image_names)})", ""]
        lines.append(
            f"{len(neighbours)} graph neighbours: {names}{more}" if len(neighbours) else "No graph neighbours."
        )
        image = load_image(scene.image_files[index], SELECTED_IMAGE_SIZE)
        if image is not None:
            lines += ["", f"![{scene.image_names[index]}]({_jpeg_data_url(image)})"]
        return "\n".join(lines)

    def _frame_scene(self, client: viser.ClientHandle) -> None:
        """Points a newly connected browser at the whole scene, from above and behind the first camera."""
        scene = self.scene
        up = scene.up_direction
        away = scene.camera_centres[0] - scene.scene_centre
        away = away - np.dot(away, up) * up
        if np.linalg.norm(away) < 1e-6:
            away = np.cross(up, [1.0, 0.0, 0.0] if abs(up[0]) < 0.9 else [0.0, 1.0, 0.0])
        away = away / np.linalg.norm(away)
        with client.atomic():
            client.camera.up_direction = up
            client.camera.position = scene.scene_centre + scene.scene_extent * (0.7 * away + 0.45 * up)
            client.camera.look_at = scene.scene_centre
