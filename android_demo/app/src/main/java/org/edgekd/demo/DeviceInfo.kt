package org.edgekd.demo

import android.content.Context
import android.content.pm.PackageInfo
import android.os.Build

/** Who ran the evaluation: the device (Build) and this app's version, for the result JSON. */
object DeviceInfo {
    fun device(): DeviceEvalJson.Device = DeviceEvalJson.Device().apply {
        manufacturer = Build.MANUFACTURER
        brand = Build.BRAND
        model = Build.MODEL
        device = Build.DEVICE
        hardware = Build.HARDWARE
        board = Build.BOARD
        androidRelease = Build.VERSION.RELEASE
        sdkInt = Build.VERSION.SDK_INT
        if (Build.VERSION.SDK_INT >= Build.VERSION_CODES.S) {
            socManufacturer = Build.SOC_MANUFACTURER
            socModel = Build.SOC_MODEL
        }
        abis = Build.SUPPORTED_ABIS
    }

    fun app(context: Context): DeviceEvalJson.App = DeviceEvalJson.App().apply {
        packageName = context.packageName
        val info: PackageInfo = context.packageManager.getPackageInfo(context.packageName, 0)
        versionName = info.versionName
        versionCode = if (Build.VERSION.SDK_INT >= Build.VERSION_CODES.P) {
            info.longVersionCode
        } else {
            @Suppress("DEPRECATION")
            info.versionCode.toLong()
        }
    }

    /** LiteRT's runtime version, or null when the library does not say. */
    fun litertVersion(): String? = try {
        org.tensorflow.lite.TensorFlowLite.runtimeVersion()
    } catch (e: Throwable) {
        null
    }
}
