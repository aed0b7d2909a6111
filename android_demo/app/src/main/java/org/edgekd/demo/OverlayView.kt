package org.edgekd.demo

import android.content.Context
import android.graphics.Canvas
import android.graphics.Color
import android.graphics.Paint
import android.util.AttributeSet
import android.view.View
import kotlin.math.max

/**
 * Draws landmarks over the camera preview. Points are in the analysed frame's pixels (pixel centres at integers);
 * the preview shows the same frame scaled to fill the view (PreviewView FILL_CENTER) and mirrored for the front
 * camera, so the same mapping is applied here.
 */
class OverlayView(context: Context, attrs: AttributeSet?) : View(context, attrs) {
    private var points: FloatArray? = null
    private var box: DoubleArray? = null
    private var frameWidth = 1
    private var frameHeight = 1
    private var mirror = false
    private val pointPaint = Paint(Paint.ANTI_ALIAS_FLAG).apply { color = Color.GREEN; style = Paint.Style.FILL }
    private val boxPaint = Paint(Paint.ANTI_ALIAS_FLAG).apply {
        color = Color.YELLOW; style = Paint.Style.STROKE; strokeWidth = 3f
    }

    fun show(points: FloatArray?, box: DoubleArray?, frameWidth: Int, frameHeight: Int, mirror: Boolean) {
        this.points = points
        this.box = box
        this.frameWidth = frameWidth
        this.frameHeight = frameHeight
        this.mirror = mirror
        invalidate()
    }

    override fun onDraw(canvas: Canvas) {
        super.onDraw(canvas)
        val scale = max(width.toFloat() / frameWidth, height.toFloat() / frameHeight)
        val dx = (width - frameWidth * scale) / 2f
        val dy = (height - frameHeight * scale) / 2f
        // A pixel-centre coordinate x covers [x, x + 1) of the frame, so its centre is at x + 0.5.
        fun vx(x: Float): Float = (if (mirror) frameWidth - (x + 0.5f) else x + 0.5f) * scale + dx
        fun vy(y: Float): Float = (y + 0.5f) * scale + dy
        box?.let { b ->
            val half = (b[2] / 2).toFloat()
            val cx = b[0].toFloat()
            val cy = b[1].toFloat()
            val left = vx(cx - half)
            val right = vx(cx + half)
            canvas.drawRect(minOf(left, right), vy(cy - half), maxOf(left, right), vy(cy + half), boxPaint)
        }
        val p = points ?: return
        val radius = max(2f, 1.5f * resources.displayMetrics.density)
        var i = 0
        while (i + 1 < p.size) {
            canvas.drawCircle(vx(p[i]), vy(p[i + 1]), radius, pointPaint)
            i += 2
        }
    }
}
